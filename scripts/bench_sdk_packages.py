#!/usr/bin/env python3
"""Packages per second of the peaq OS SDK (peaq-os-sdk 0.12.1) `build_signed_data_package` on
the same BatteryState-sized message and rules as `src/core/benches/packages.rs`.

Run: /work/main/.venv/bin/python scripts/bench_sdk_packages.py [N]
"""

import sys
import time

from peaq_os_sdk.stream.signing import build_signed_data_package
from peaq_os_sdk.stream.types.data_package import UnsignedDataPayload
from peaq_os_sdk.stream.types.field_rule import FieldRule, TopicFieldRules
from peaq_os_sdk.stream.types.signing_key import EncryptionContext, SigningContext

FIELDS = {
    "header": {"stamp": {"sec": 1735000000, "nanosec": 123456789}, "frame_id": "base_link"},
    "voltage": 12.6,
    "temperature": 31.5,
    "current": -1.25,
    "charge": 4.2,
    "capacity": 5.0,
    "design_capacity": 5.2,
    "percentage": 0.81,
    "power_supply_status": 2,
    "power_supply_health": 1,
    "power_supply_technology": 2,
    "present": True,
    "cell_voltage": [3.15, 3.16, 3.13, 3.15],
    "cell_temperature": [30.5, 31.0, 31.5, 30.0],
    "location": "warehouse-7/bay-12",
    "serial_number": "BAT-2026-000123",
}

RULES = TopicFieldRules(
    topic="/battery_state",
    rules=(
        FieldRule(field_path="location", action="encrypt"),
        FieldRule(field_path="serial_number", action="anonymize", anonymize_strategy="hash"),
    ),
)
SIGNING = SigningContext(
    private_key="0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    backend="software",
    did="did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    key_id="did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266#keys-1",
)
ENC = EncryptionContext(encryption_key="0x" + "11" * 32, algorithm="AES-256-GCM")


def run(n):
    start = time.perf_counter()
    for seq in range(n):
        build_signed_data_package(
            unsigned_payload=UnsignedDataPayload(
                topic="/battery_state", fields=FIELDS, captured_at="2026-01-01T00:00:00Z"
            ),
            topic_rules=RULES,
            signing_ctx=SIGNING,
            encryption_ctx=ENC,
            schema_version="1.0.0",
            sequence_number=seq,
        )
    return time.perf_counter() - start


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    run(min(200, n))  # warm-up
    el = run(n)
    print(f"peaq-os-sdk: {n} packages in {el:.3f} s = {n / el:.0f} packages/s on one thread")


if __name__ == "__main__":
    main()
