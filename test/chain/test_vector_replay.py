"""Replays the SDK-computed calldata vectors (test/fixtures/sdk/vectors) as raw transactions.

What the SDKs encode must be what the stand-ins decode: each vector's calldata is sent
unchanged from the key it was computed for (anvil account #0 = the SPEC §8 test key, #1 = the
operator) and the resulting state is compared with the vector's parameters.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from eth_abi import encode
from eth_account import Account
from web3 import Web3

import harness

VECTORS = Path(os.environ.get("PEAQOS_VECTORS_DIR", Path(__file__).resolve().parents[1] / "fixtures" / "sdk" / "vectors"))


def _load(name: str) -> dict:
    path = VECTORS / name
    assert path.exists(), f"{path} missing: the SDK vectors are part of the repository"
    return json.loads(path.read_text())


def _raw(chain, sender: str, to: str, data: str, value: int = 0):
    tx = chain.w3.eth.send_transaction({"from": sender, "to": Web3.to_checksum_address(to), "data": data, "value": value})
    return chain.w3.eth.wait_for_transaction_receipt(tx)


def test_activate_machine_vector_calldata(chain):
    v = _load("v2_events_activation.json")
    signer = v["test_key"]["address"]
    assert Account.from_key(v["test_key"]["private_key"]).address == signer == chain.accounts[0].address
    act = v["activateMachine"]
    assert Web3.to_checksum_address(act["to"]) == chain.gen2["machine_state_and_sync"]
    token = chain.contract("PeaqToken", harness.PRECOMPILES["peaq_token"])
    _raw(chain, signer, token.address, token.encode_abi("approve", [chain.gen2["machine_subscription"], harness.TIER_BONDS_WEI[0]]))

    receipt = _raw(chain, signer, act["to"], act["calldata"])
    assert receipt["status"] == 1
    machine_id = int(act["machineId_hex"], 16)
    assert machine_id == int(act["machineId_offchain"])
    registry = chain.contract("MachineRegistry", chain.gen2["machine_registry"])
    assert registry.functions.computeTokenId(act["machineType"], bytes.fromhex(act["credentialSubject_hex"][2:])).call() == machine_id
    assert registry.functions.ownerOf(machine_id).call() == signer
    assert registry.functions.manufacturerOf(machine_id).call() == Web3.to_checksum_address(act["manufacturer"])
    doc = registry.functions.didDocument(machine_id).call()
    want = act["did_document_arg"]
    assert doc[1] == Web3.to_checksum_address(want["controller"])
    assert [vm[3] for vm in doc[2]] == [m["publicKeyMultibase"] for m in want["verificationMethods"]]
    assert list(doc[3]) == want["authentication"]
    assert [se[2] for se in doc[4]] == [s["serviceEndpoint"] for s in want["serviceEndpoints"]]


def test_submit_event_vectors_decode_on_both_registries(chain):
    v = _load("v2_events_activation.json")
    signer = v["test_key"]["address"]
    cases = v["submitEvent_calldata"]

    # gen 2: machine 42 does not exist there; the revert carries the decoded machineId.
    for case in cases[:2]:
        with pytest.raises(Exception) as info:
            chain.w3.eth.call({"from": signer, "to": case["to"], "data": case["calldata"]})
        assert "0x7e273289" + encode(["uint256"], [42]).hex() in str(info.value.args)
    # batchAll over cases 1-2 forwards that same revert data from the first subcall.
    batch = v["batchAll_calldata"]
    with pytest.raises(Exception) as info:
        chain.w3.eth.call({"from": signer, "to": batch["to"], "data": batch["calldata"]})
    assert "0x7e273289" + encode(["uint256"], [42]).hex() in str(info.value.args)

    # gen 1 (same selector, different `to`): make machine 42 exist with #0 as its operator.
    registry = chain.contract("IdentityRegistry", chain.gen1["identity_registry"])
    for i in range(42):
        target = Web3.to_checksum_address(Web3.keccak(text=f"machine-{i}")[-20:])
        _raw(chain, signer, registry.address, registry.encode_abi("registerFor", [target]), value=10**18)
    assert registry.functions.totalMachines().call() >= 42
    events = chain.contract("EventRegistryV1", chain.gen1["event_registry"])
    for case in cases[:2]:
        assert _raw(chain, signer, events.address, case["calldata"])["status"] == 1
    for index, case in enumerate(cases[:2]):
        p = case["params"]
        stored = events.functions.getEventAt(42, index).call()
        assert stored[0] == int(p["machineId"]) == 42
        assert (stored[1], stored[2], stored[3]) == (int(p["eventType"]), int(p["value"]), int(p["timestamp"]))
        assert "0x" + bytes(stored[4]).hex() == p["dataHash"]
        assert (stored[5], stored[6]) == (int(p["trustLevel"]), int(p["sourceChainId"]))
        assert "0x" + bytes(stored[7]).hex() == p["sourceTxHash"]
        assert "0x" + bytes(stored[8]).hex() == p["metadata_hex"]
        assert stored[9] == p["currency"]


def test_legacy_did_and_registration_vectors(chain):
    v = _load("v1_legacy.json")
    machine, operator = v["machine"], v["operator"]
    assert [machine, operator] == [chain.accounts[0].address, chain.accounts[1].address]
    calls = v["calldata"]
    registry = chain.gen1["identity_registry"]

    for_key = next(k for k in calls if k.startswith("IdentityRegistry.registerFor("))
    assert _raw(chain, operator, registry, calls[for_key], value=10**18)["status"] == 1
    of_key = next(k for k in calls if k.startswith("IdentityRegistry.machineIdOfOwner("))
    machine_id = int.from_bytes(chain.w3.eth.call({"to": registry, "data": calls[of_key]}), "big")
    assert machine_id >= 1

    did = chain.contract("DIDPrecompile", harness.PRECOMPILES["did"])
    mda = v["machine_did_attributes"]
    assert _raw(chain, machine, harness.PRECOMPILES["batch"], mda["batchAll_calldata"])["status"] == 1
    for attr in mda["attributes"]:
        stored = did.functions.readAttribute(machine, attr["name"].encode()).call()
        assert stored[1].decode() == attr["value"]
    pda = v["proxy_did_attributes"]
    for attr in pda["attributes"]:
        assert _raw(chain, operator, harness.PRECOMPILES["did"], attr["addAttribute_calldata"])["status"] == 1
    assert did.functions.readAttribute(operator, b"machines").call()[1] == b"[42, 43, 44]"
    read_key = next(k for k in calls if k.startswith("DID.readAttribute("))
    assert chain.w3.eth.call({"to": harness.PRECOMPILES["did"], "data": calls[read_key]})
