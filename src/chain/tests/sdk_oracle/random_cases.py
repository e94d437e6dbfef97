"""Random encoding/validation cases computed by peaq-os-sdk 0.12.1 (the oracle).

Usage: python random_cases.py <seed> <count>  -> JSON on stdout:
  {"submit": [{params..., "calldata"}], "batch": {"registry", "indices", "calldata"},
   "activate": [{..., "calldata", "machine_id"}], "validate": [{params..., "outcome"}]}
Run by tests/sdk_random.rs with /work/main/.venv/bin/python.
"""
import json
import random
import sys

from eth_abi import encode as abi_encode
from web3 import Web3

from peaq_os_sdk.abis import EVENT_REGISTRY_ABI, MACHINE_STATE_AND_SYNC_ABI, load_abi
from peaq_os_sdk.exceptions.validation_error import ValidationError
from peaq_os_sdk.types.events import SubmitEventParams
from peaq_os_sdk.utils.data_hash import compute_data_hash
from peaq_os_sdk.validation.submit_event import validate_submit_event_params

seed, count = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
w3 = Web3()
REG = "0xA1e7F1d7B24dAb55Dc92491e6d9B89F6E925Ad1e"
registry = w3.eth.contract(address=REG, abi=EVENT_REGISTRY_ABI)
batch = w3.eth.contract(address="0x0000000000000000000000000000000000000805", abi=load_abi("BatchPrecompile"))
mss = w3.eth.contract(address="0xcD1917FB2a56459AcA34FDD118e08776dE0890f2", abi=MACHINE_STATE_AND_SYNC_ABI)


def rbytes(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def rtext(n):
    alphabet = "abcXYZ019 _-:/{}\"\u00e9\u2603"
    return "".join(rng.choice(alphabet) for _ in range(n))


def raddr():
    return Web3.to_checksum_address("0x" + rbytes(20).hex())


out = {"submit": [], "activate": [], "validate": []}
for _ in range(count):
    et = rng.choice([0, 1])
    p = {
        "machine_id": str(rng.choice([1, 42, rng.getrandbits(64) + 1, rng.getrandbits(256) | 1])),
        "event_type": et,
        "value": str(rng.choice([0, 1, rng.getrandbits(32), rng.getrandbits(200)])),
        "currency": rng.choice(["USD", "EUR", "JPY", "ABCDEFGHIJ", "X1Y2"]) if et == 0 else "",
        "timestamp": rng.choice([1, 1735000000, rng.getrandbits(40) + 1]),
        "raw_data": rbytes(rng.randint(1, 80)).hex() if rng.random() < 0.7 else None,
        "trust_level": rng.choice([0, 1, 2]),
        "source_chain_id": rng.choice([0, 1, 10, 137, 3338, 8453, 42161]),
        "source_tx_hash": "0x" + rbytes(32).hex() if rng.random() < 0.5 else None,
        "metadata": rbytes(rng.randint(0, 300)).hex(),
    }
    if p["trust_level"] == 1 and p["source_tx_hash"] is None:
        p["source_tx_hash"] = "0x" + rbytes(32).hex()
    params = SubmitEventParams(
        machine_id=int(p["machine_id"]), event_type=et, value=int(p["value"]), timestamp=p["timestamp"],
        raw_data=bytes.fromhex(p["raw_data"]) if p["raw_data"] is not None else None,
        trust_level=p["trust_level"], source_chain_id=p["source_chain_id"], source_tx_hash=p["source_tx_hash"],
        metadata=bytes.fromhex(p["metadata"]), currency=p["currency"],
    )
    validate_submit_event_params(params)
    data_hash = compute_data_hash(params.raw_data) if params.raw_data is not None else b"\x00" * 32
    sth = params.source_tx_hash or "0x" + "00" * 32
    p["calldata"] = registry.functions.submitEvent(
        params.machine_id, et, params.value, params.currency, params.timestamp, data_hash,
        params.trust_level, params.source_chain_id, sth, params.metadata,
    )._encode_transaction_data()
    p["data_hash"] = "0x" + bytes(data_hash).hex()
    out["submit"].append(p)

idx = list(range(min(5, len(out["submit"]))))
calls = [out["submit"][i]["calldata"] for i in idx]
out["batch"] = {
    "registry": REG,
    "indices": idx,
    "calldata": batch.encode_abi("batchAll", args=[[REG] * len(calls), [0] * len(calls), calls, [0] * len(calls)]),
}

for _ in range(max(1, count // 4)):
    nvm = rng.randint(0, 3)
    vms = [{"id": "#" + rtext(4), "methodType": rtext(6), "controller": raddr(), "publicKeyMultibase": "z" + rtext(8)} for _ in range(nvm)]
    ses = [{"id": "#" + rtext(3), "serviceType": rtext(5), "serviceEndpoint": "https://" + rtext(10)} for _ in range(rng.randint(0, 2))]
    auth = [rng.randrange(nvm) for _ in range(rng.randint(0, nvm))] if nvm else []
    doc = {"id": "", "controller": raddr(), "verificationMethods": vms, "authentication": auth, "serviceEndpoints": ses}
    mt = rtext(rng.randint(1, 12))
    cs = rbytes(rng.randint(1, 64))
    man = raddr()
    tier = rng.choice([0, 1, 2])
    cd = mss.encode_abi("activateMachine", args=[doc, mt, cs, man, tier])
    mid = int.from_bytes(Web3.keccak(abi_encode(["string", "bytes"], [mt, cs])), "big")
    out["activate"].append({"doc": doc, "machine_type": mt, "credential_subject": cs.hex(), "manufacturer": man,
                            "tier": tier, "calldata": cd, "machine_id": str(mid)})

OMIT = "<__OMITTED__>"
for _ in range(count):
    def pick(valid, invalid):
        return rng.choice(valid) if rng.random() < 0.85 else rng.choice(invalid)

    p = {
        "machine_id": str(pick([1, 42, 2**256 - 1], [0])),
        "event_type": pick([0, 1], [-1, 2]),
        "value": pick([0, 5, 10**30], [-1, 1.5, "7", True]),
        "timestamp": pick([1735000000, 4102444800], [0, -3]),
        "raw_data": pick([None, "00ff", "73656e736f723a6f6b"], [""]),
        "trust_level": pick([0, 1, 2], [-1, 3]),
        "source_chain_id": pick([0, 1, 3338, 8453], [9990, 5]),
        "source_tx_hash": pick([None, "0x" + "ab" * 32, "0x" + "zz" * 32], ["0x1234", "ab" * 33]),
        "metadata": "",
        "currency": rng.choice(["USD", "usd", "US", "", None, OMIT, "USD\n", "ABCDEFGHIJK", "EUR", "A1B2C3"]),
    }
    kwargs = dict(
        machine_id=int(p["machine_id"]), event_type=p["event_type"], value=p["value"], timestamp=p["timestamp"],
        raw_data=bytes.fromhex(p["raw_data"]) if p["raw_data"] is not None else None,
        trust_level=p["trust_level"], source_chain_id=p["source_chain_id"], source_tx_hash=p["source_tx_hash"],
        metadata=b"",
    )
    if p["currency"] != OMIT:
        kwargs["currency"] = p["currency"]
    try:
        validate_submit_event_params(SubmitEventParams(**kwargs))
        outcome = {"ok": True}
    except ValidationError as e:
        outcome = {"ok": False, "error": "ValidationError", "field": e.field, "constraint": e.constraint, "message": str(e.message) if hasattr(e, "message") else str(e)}
    except TypeError as e:
        outcome = {"ok": False, "error": "TypeError", "message": str(e)}
    p["value_type"] = type(p["value"]).__name__
    p["value"] = str(p["value"])
    p["outcome"] = outcome
    out["validate"].append(p)

print(json.dumps(out))
