#!/usr/bin/env python3
"""Oracle for peaqos_core's tests: runs the real peaq OS SDK (peaq-os-sdk 0.12.1) on inputs
written by the Rust tests and prints the SDK's results as JSON on stdout.

Usage: sdk_oracle.py REQUEST.json

REQUEST = {
  "canonical":   [json_text, ...],             -> canonical_json_stringify(json.loads(t)) or {"error": ...}
  "field_rules": [{"fields", "rules": [{"path","action","strategy"}], "default_action",
                   "key_hex", "iv_hex"}, ...]  -> apply_field_rules with secrets.token_bytes fixed to iv
  "verify":      [package_json_text, ...]      -> verify_data_package (valid, reason)
  "build":       [{"fields","rules","default_action","key_hex","iv_hex","private_key","did",
                   "key_id","captured_at","schema_version","sequence_number"}, ...]
                                               -> build_signed_data_package as camelCase dict
}
"""

import json
import sys

import peaq_os_sdk.stream._internal.encrypt_field as encrypt_field
from peaq_os_sdk.stream._internal.canonical_json import canonical_json_stringify
from peaq_os_sdk.stream.field_rules import apply_field_rules
from peaq_os_sdk.stream.signing import build_signed_data_package
from peaq_os_sdk.stream.types.data_package import DataPackage, UnsignedDataPayload
from peaq_os_sdk.stream.types.field_rule import FieldRule, TopicFieldRules
from peaq_os_sdk.stream.types.signing_key import EncryptionContext, SigningContext
from peaq_os_sdk.stream.verification import verify_data_package


class _FixedIv:
    """Stands in for the `secrets` module inside encrypt_field: token_bytes returns `iv`."""

    def __init__(self):
        self.iv = b"\x00" * 12

    def token_bytes(self, n):
        assert n == len(self.iv)
        return self.iv


FIXED = _FixedIv()
encrypt_field.secrets = FIXED


def topic_rules(case):
    rules = tuple(
        FieldRule(field_path=r["path"], action=r["action"], anonymize_strategy=r.get("strategy"))
        for r in case["rules"]
    )
    return TopicFieldRules(topic="/t", rules=rules, default_action=case.get("default_action"))


def run_rules(case):
    FIXED.iv = bytes.fromhex(case["iv_hex"])
    try:
        out = apply_field_rules(
            case["fields"],
            topic_rules(case),
            EncryptionContext(encryption_key=case["key_hex"], algorithm="AES-256-GCM"),
        )
        return {"ok": canonical_json_stringify(out)}
    except Exception as e:  # noqa: BLE001 - reported to the Rust test
        return {"error": f"{type(e).__name__}: {e}"}


def run_canonical(text):
    try:
        return {"ok": canonical_json_stringify(json.loads(text))}
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def run_verify(text):
    d = json.loads(text)
    pkg = DataPackage(
        did=d["did"],
        timestamp=d["timestamp"],
        schema_version=d["schemaVersion"],
        sequence_number=d["sequenceNumber"],
        payload=d["payload"],
        signature=d["signature"],
        signing_key_id=d["signingKeyId"],
    )
    r = verify_data_package(pkg)
    return {"valid": r.valid, "reason": r.reason}


def run_build(case):
    FIXED.iv = bytes.fromhex(case["iv_hex"])
    p = build_signed_data_package(
        unsigned_payload=UnsignedDataPayload(topic="/t", fields=case["fields"], captured_at=case["captured_at"]),
        topic_rules=topic_rules(case),
        signing_ctx=SigningContext(
            private_key=case["private_key"], backend="software", did=case["did"], key_id=case["key_id"]
        ),
        encryption_ctx=EncryptionContext(encryption_key=case["key_hex"], algorithm="AES-256-GCM"),
        schema_version=case["schema_version"],
        sequence_number=case["sequence_number"],
    )
    return canonical_json_stringify(
        {
            "did": p.did,
            "timestamp": p.timestamp,
            "schemaVersion": p.schema_version,
            "sequenceNumber": p.sequence_number,
            "payload": p.payload,
            "signature": p.signature,
            "signingKeyId": p.signing_key_id,
        }
    )


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        req = json.load(f)
    res = {
        "canonical": [run_canonical(t) for t in req.get("canonical", [])],
        "field_rules": [run_rules(c) for c in req.get("field_rules", [])],
        "verify": [run_verify(t) for t in req.get("verify", [])],
        "build": [run_build(c) for c in req.get("build", [])],
    }
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    main()
