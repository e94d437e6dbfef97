"""The harness itself: serve CLI, chain-id option, stop/restart with state, precompile stand-ins."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_abi import decode, encode
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from peaq_os_sdk import DeploymentConfig, PeaqosClient
from peaq_os_sdk.onboarding.activation_types import ActivateMachineParams

import harness

HERE = Path(__file__).resolve().parent
ZERO32 = b"\x00" * 32


def _serve(*extra: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "harness.py"), "serve", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"serve printed nothing: {proc.stderr.read()}")
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def _activate(rpc_url: str, deployment_id: str, key_index: int = 0, machine_type: str = "robot"):
    client = PeaqosClient(rpc_url=rpc_url, private_key=harness.ANVIL_KEYS[key_index],
                          deployment=DeploymentConfig(deployment_id=deployment_id))
    me = client.address
    return client, client.activate_machine(ActivateMachineParams(
        controller=me, verification_methods=(), authentication=(), service_endpoints=(),
        machine_type=machine_type, credential_subject=b"SN-1", manufacturer=me, tier=0))


def test_serve_prints_one_json_line_and_stops_on_sigterm():
    proc, info = _serve()
    try:
        assert info["chain_id"] == 3338
        w3 = Web3(Web3.HTTPProvider(info["rpc_url"]))
        assert w3.eth.chain_id == 3338
        for role in ("info_desk", "machine_registry", "machine_state_and_sync", "machine_subscription",
                     "cross_chain_mirror", "machine_bridge_adapter", "subscription_token_provision_pool",
                     "event_registry"):
            assert w3.eth.get_code(info["gen2"][role]), role
        for role in ("identity_registry", "identity_staking", "event_registry", "machine_nft", "machine_account_factory"):
            assert w3.eth.get_code(info["gen1"][role]), role
        for address in info["precompiles"].values():
            assert w3.eth.get_code(address)
        assert info["gen2"]["deployment_id"] == "peaq-mainnet"
        assert len(info["accounts"]) == 9
        token = w3.eth.contract(address=info["precompiles"]["peaq_token"], abi=harness.load_artifact("PeaqToken")["abi"])
        assert token.functions.balanceOf(info["accounts"][0]["address"]).call() == int(info["funding"]["peaq_token_wei"])
        _activate(info["rpc_url"], "peaq-mainnet")
    finally:
        assert _stop(proc) == 0
    with pytest.raises(Exception):
        Web3(Web3.HTTPProvider(info["rpc_url"], request_kwargs={"timeout": 2})).eth.chain_id


def test_agung_chain_id_places_the_agung_record():
    proc, info = _serve("--chain-id", "9990")
    try:
        assert info["chain_id"] == 9990 and info["gen2"]["deployment_id"] == "agung-2026-08-28"
        assert info["gen2"]["info_desk"] == "0x72b66AF120c55371cA6e5Ce38D4e10dF1bA30Bb1"
        assert info["gen1"]["identity_registry"] == "0x9E9463a65c7B74623b3b6Cdc39F71be7274e5971"
        _, result = _activate(info["rpc_url"], "agung-2026-08-28")
        assert result.chain_id == 9990
    finally:
        assert _stop(proc) == 0


def test_stop_and_restart_keep_the_chain(fresh_chain):
    chain = fresh_chain
    client, result = _activate(chain.rpc_url, "peaq-mainnet")
    ts = chain.latest_timestamp()
    client.submit_event(machine_id=result.machine_id, event_type=1, value=0, timestamp=ts, raw_data=None,
                        trust_level=0, source_chain_id=0, source_tx_hash=None, metadata=b"", currency="")
    block = chain.w3.eth.block_number
    events = chain.contract("EventRegistryV2", chain.gen2["event_registry"])

    chain.stop()
    with pytest.raises(Exception):
        Web3(Web3.HTTPProvider(chain.rpc_url, request_kwargs={"timeout": 2})).eth.block_number
    time.sleep(0.5)
    chain.restart()

    assert chain.w3.eth.block_number >= block
    assert events.functions.getEventCount(result.machine_id).call() == 1
    # The same client keeps working: nonce continuity, ownership, subscription.
    client.submit_event(machine_id=result.machine_id, event_type=1, value=0, timestamp=chain.latest_timestamp(),
                        raw_data=None, trust_level=0, source_chain_id=0, source_tx_hash=None, metadata=b"", currency="")
    assert events.functions.getEventCount(result.machine_id).call() == 2


def _batch(chain):
    return chain.contract("BatchPrecompile", harness.PRECOMPILES["batch"])


def _did(chain):
    return chain.contract("DIDPrecompile", harness.PRECOMPILES["did"])


def _send(chain, fn, index=0):
    tx = fn.transact({"from": chain.accounts[index].address})
    return chain.w3.eth.wait_for_transaction_receipt(tx)


def _add_call(chain, account: str, name: bytes, value: bytes) -> bytes:
    return bytes.fromhex(_did(chain).encode_abi("addAttribute", [account, name, value, 0])[2:])


def test_batch_modes_and_sender_forwarding(chain):
    me = chain.accounts[0].address
    did, batch = _did(chain), _batch(chain)
    good, dup = _add_call(chain, me, b"a", b"1"), _add_call(chain, me, b"a", b"2")
    other = _add_call(chain, me, b"b", b"3")
    n = 3
    topics = {Web3.keccak(text="SubcallSucceeded(uint256)"): "ok", Web3.keccak(text="SubcallFailed(uint256)"): "fail"}

    def outcome(receipt):
        return [(topics[log["topics"][0]], decode(["uint256"], log["data"])[0]) for log in receipt["logs"]
                if log["topics"][0] in topics]

    receipt = _send(chain, batch.functions.batchSome([did.address] * n, [0] * n, [good, dup, other], [0] * n))
    assert outcome(receipt) == [("ok", 0), ("fail", 1), ("ok", 2)]
    assert did.functions.readAttribute(me, b"b").call()[1] == b"3"
    # The DID event carries the EOA as sender and has a single topic (node-style log1).
    (add_log, *_rest) = [log for log in receipt["logs"] if log["address"] == did.address]
    assert len(add_log["topics"]) == 1
    assert decode(["address", "address", "bytes", "bytes", "uint32"], add_log["data"])[0] == me.lower()

    c, d = _add_call(chain, me, b"c", b"1"), _add_call(chain, me, b"d", b"1")
    receipt = _send(chain, batch.functions.batchSomeUntilFailure([did.address] * 3, [], [c, dup, d], []))
    assert outcome(receipt) == [("ok", 0), ("fail", 1)]
    with pytest.raises(ContractLogicError, match="Cannot find the item"):
        did.functions.readAttribute(me, b"d").call()

    # batchAll: the failing subcall's revert data comes back unchanged.
    events = chain.contract("EventRegistryV2", chain.gen2["event_registry"])
    call = bytes.fromhex(events.encode_abi("submitEvent", [777, 0, 1, "USD", 1, ZERO32, 0, 0, ZERO32, b""])[2:])
    with pytest.raises(ContractCustomError) as info:
        batch.functions.batchAll([events.address], [0], [call], [0]).call({"from": me})
    assert info.value.data == "0x7e273289" + encode(["uint256"], [777]).hex()
    with pytest.raises(ContractLogicError, match="AttributeAlreadyExist"):
        batch.functions.batchAll([did.address, did.address], [], [_add_call(chain, me, b"e", b"1"), good], []).call(
            {"from": me})


def test_did_precompile_rules(chain):
    me, other = chain.accounts[0].address, chain.accounts[1].address
    did = _did(chain)
    _send(chain, did.functions.addAttribute(me, b"name", b"v1", 0))
    attr = did.functions.readAttribute(me, b"name").call()
    assert attr[0] == b"name" and attr[1] == b"v1" and attr[2] == 2**32 - 1
    with pytest.raises(ContractLogicError, match="AttributeAlreadyExist"):
        did.functions.addAttribute(me, b"name", b"v2", 0).call({"from": me})
    with pytest.raises(ContractLogicError, match="AttributeAuthorizationFailed"):
        did.functions.addAttribute(me, b"x", b"v", 0).call({"from": other})
    with pytest.raises(ContractLogicError, match="Name too long"):
        did.functions.addAttribute(me, b"n" * 65, b"v", 0).call({"from": me})
    _send(chain, did.functions.updateAttribute(me, b"name", b"v2", 10))
    attr = did.functions.readAttribute(me, b"name").call()
    assert attr[1] == b"v2" and attr[2] == chain.w3.eth.block_number + 10
    _send(chain, did.functions.removeAttribute(me, b"name"))
    with pytest.raises(ContractLogicError, match="Cannot find the item"):
        did.functions.readAttribute(me, b"name").call()
    with pytest.raises(ContractLogicError, match="AttributeNotFound"):
        did.functions.updateAttribute(me, b"name", b"v3", 0).call({"from": me})


def test_appended_sender_is_ignored_unless_the_caller_is_the_batch(chain):
    """A direct caller cannot impersonate someone by appending an address to its calldata."""
    me, stranger = chain.accounts[0].address, chain.accounts[3].address
    did = _did(chain)
    payload = _add_call(chain, me, b"spoof", b"1") + bytes.fromhex(me[2:])
    with pytest.raises(ContractLogicError, match="AttributeAuthorizationFailed"):
        chain.w3.eth.call({"from": stranger, "to": did.address, "data": "0x" + payload.hex()})


def test_serve_control_stop_restart_and_stdin_eof():
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "harness.py"), "serve", "--stdin-control"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        w3 = Web3(Web3.HTTPProvider(info["rpc_url"], request_kwargs={"timeout": 2}))
        block = w3.eth.block_number
        proc.send_signal(signal.SIGUSR1)
        assert json.loads(proc.stdout.readline())["event"] == "stopped"
        with pytest.raises(Exception):
            w3.eth.block_number
        proc.stdin.write("restart\n")
        proc.stdin.flush()
        restarted = json.loads(proc.stdout.readline())
        assert restarted["event"] == "restarted" and restarted["block_number"] == block
        assert w3.eth.get_code(info["gen2"]["event_registry"])
        proc.stdin.close()  # the controlling process went away
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
