"""The chain services end to end: rclpy clients call peaqos_node's services, the node's
embedded chain client talks to a real anvil running contracts that implement the peaqOS ABIs,
and the results are read back from the chain with web3, independently of the node."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "chain"))

from peaqos_harness import (DEMO_ADDRESS, DEMO_KEY, NodeProcess, call_service, poll_until,  # noqa: E402
                             run_node_expecting_failure, scaled, sleep_scaled, wait_until)

import rclpy
import harness
from eth_abi import encode as abi_encode  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from web3 import Web3  # noqa: E402

from peaqos_node.msg import Event, TxStatus  # noqa: E402
from peaqos_node.srv import (  # noqa: E402
    Activate,
    BatchSubmitEvents,
    MintNft,
    ReadDidAttribute,
    Register,
    SubmitEvent,
    TokenIdOf,
    ValidateEvent,
)

CRED = b'{"serial":"SN-0001"}'
SN_MACHINE_ID = 68123071818652871610609668041857058707577683891190389007676586470311462177609  # SPEC 8.4


def node_params(tmp: Path, chain, **extra) -> dict[str, str]:
    policy = tmp / "map.yaml"
    policy.write_text("schema_version: 1\ntopics:\n  - topic: /t/unused\n    type: std_msgs/msg/String\n")
    p = {
        "policy_file": str(policy),
        "data_dir": str(tmp / "data"),
        "chain.rpc_urls": f"['{chain.rpc_url}']",
        "chain.receipt_timeout": "30.0",
    }
    p.update({k: str(v) for k, v in extra.items()})
    return p


class Caller:
    """Synchronous service calls from an rclpy node."""

    def __init__(self, node, node_name: str = "peaqos_node", proc: NodeProcess | None = None):
        self.node = node
        self.proc = proc
        self.prefix = f"/{node_name}"
        self.clients = {}
        self.statuses: list[TxStatus] = []
        q = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(TxStatus, f"{self.prefix}/tx_status", self.statuses.append, q)

    def call(self, srv, service: str, /, timeout: float = 60.0, **fields):
        if service not in self.clients:
            self.clients[service] = self.node.create_client(srv, f"{self.prefix}/{service}")
        req = srv.Request()
        for k, v in fields.items():
            setattr(req, k, v)
        return call_service(self.node, self.clients[service], req, timeout=timeout, proc=self.proc)

    def spin_until(self, pred, timeout=30.0) -> bool:
        return poll_until(pred, timeout, spin=self.node)


def event_registry(chain):
    return chain.contract("EventRegistryV2", chain.gen2["event_registry"])


def activate_gen2(c: Caller, **over):
    fields = dict(
        machine_type="robot",
        credential_subject_hex="0x" + CRED.hex(),
        manufacturer="0x3333333333333333333333333333333333333333",
        tier=0,
        did_document_json=json.dumps({
            "verificationMethods": [{"id": "#key-1", "methodType": "EcdsaSecp256k1RecoveryMethod2020",
                                     "controller": DEMO_ADDRESS, "publicKeyMultibase": "zTest"}],
            "authentication": [0],
            "serviceEndpoints": [{"id": "#data", "serviceType": "DataAPI",
                                  "serviceEndpoint": "https://api.example.com/robot-001"}],
        }),
    )
    fields.update(over)
    return c.call(Activate, "activate", timeout=120, **fields)


@pytest.fixture(scope="module")
def gen2_chain():
    with harness.TestChain() as chain:
        yield chain


@pytest.fixture(scope="module")
def gen2_node(gen2_chain, tmp_path_factory, rclpy_ctx):
    tmp = tmp_path_factory.mktemp("gen2")
    node = NodeProcess(tmp, node_params(tmp, gen2_chain)).start()
    node.wait_for_log("subscribed to /t/unused")
    rnode = rclpy_ctx.create_node("chain_caller")
    c = Caller(rnode, proc=node)
    r = activate_gen2(c)
    assert r.success, (r.error_code, r.error_field, r.message, node.output())
    yield node, c, int(r.machine_id), tmp
    rnode.destroy_node()
    node.stop()


def test_activate_economics2_reads_back_on_chain(gen2_chain, gen2_node):
    node, c, machine_id, _ = gen2_node
    assert machine_id == SN_MACHINE_ID
    reg = gen2_chain.contract("MachineRegistry", gen2_chain.gen2["machine_registry"])
    sub = gen2_chain.contract("MachineSubscription", gen2_chain.gen2["machine_subscription"])
    assert reg.functions.ownerOf(machine_id).call() == DEMO_ADDRESS
    assert reg.functions.controllerOf(machine_id).call() == DEMO_ADDRESS
    assert sub.functions.subscriptionStatus(machine_id).call() == 1  # active
    # A second activation is refused with the SDK's code and nothing is sent.
    again = activate_gen2(c)
    assert not again.success and again.error_code == "ALREADY_ACTIVATED", again
    # Every refusal names a request field (issue 14 #4): the machine is what expected_machine_id names.
    assert again.error_field == "expected_machine_id", again
    empty = activate_gen2(c, credential_subject_hex="0x")
    assert (empty.success, empty.error_field) == (False, "credential_subject_hex"), empty


def test_submit_event_is_included_and_matches_the_request(gen2_chain, gen2_node):
    node, c, machine_id, _ = gen2_node
    reg = event_registry(gen2_chain)
    before = reg.functions.getEventCount(machine_id).call()
    ts = gen2_chain.latest_timestamp() - 5
    r = c.call(SubmitEvent, "submit_event", machine_id=str(machine_id), event_type=0, value="123",
               currency="EUR", timestamp=ts, raw_data=list(b"sensor:ok"), trust_level=0,
               source_chain_id=3338, metadata=list(b'{"mode":"self"}'))
    assert r.success, (r.error_code, r.error_field, r.message)
    assert r.data_hash == "0xa924b78ada90bc8221efa167de474b1948bde9aab673a7951f7ab4cf1608130d"  # SPEC 8.1
    assert r.block_number > 0 and r.tx_hash.startswith("0x") and len(r.tx_hash) == 66
    assert reg.functions.getEventCount(machine_id).call() == before + 1
    e = reg.functions.getEventAt(machine_id, before).call()
    # MachineEvent: machineId, eventType, value, timestamp, dataHash, trustLevel, sourceChainId, sourceTxHash, metadata, currency
    assert (e[0], e[1], e[2], e[3]) == (machine_id, 0, 123, ts)
    assert "0x" + e[4].hex() == r.data_hash
    assert (e[5], e[6], e[8], e[9]) == (0, 3338, b'{"mode":"self"}', "EUR")
    receipt = gen2_chain.w3.eth.get_transaction_receipt(r.tx_hash)
    assert receipt.status == 1 and receipt["from"] == DEMO_ADDRESS
    # ~/tx_status reported the intent through to inclusion
    wait_until(lambda: any(s.intent_id == r.intent_id and s.state == "included" for s in c.statuses), 30,
               "the intent included on ~/tx_status", nodes=c.proc, spin=c.node)


def test_revenue_currency_defaults_to_usd_and_activity_to_empty(gen2_chain, gen2_node):
    node, c, machine_id, _ = gen2_node
    reg = event_registry(gen2_chain)
    n = reg.functions.getEventCount(machine_id).call()
    ts = gen2_chain.latest_timestamp() - 1
    r1 = c.call(SubmitEvent, "submit_event", machine_id=str(machine_id), event_type=0, value="5", timestamp=ts)
    r2 = c.call(SubmitEvent, "submit_event", machine_id=str(machine_id), event_type=1, value="7", timestamp=ts)
    assert r1.success and r2.success, (r1.message, r2.message)
    assert reg.functions.getEventAt(machine_id, n).call()[9] == "USD"
    assert reg.functions.getEventAt(machine_id, n + 1).call()[9] == ""
    assert reg.functions.getEventAt(machine_id, n).call()[4] == b"\0" * 32  # no raw data: zero hash


def test_batch_submit_events_is_one_transaction(gen2_chain, gen2_node):
    node, c, machine_id, _ = gen2_node
    reg = event_registry(gen2_chain)
    n = reg.functions.getEventCount(machine_id).call()
    ts = gen2_chain.latest_timestamp() - 1
    events = [Event(machine_id=str(machine_id), event_type=0, value=str(100 + i), currency="USD", timestamp=ts,
                    raw_data=list(f"fare {i}".encode())) for i in range(3)]
    events.append(Event(machine_id=str(machine_id), event_type=1, value="1", currency="", timestamp=ts))
    r = c.call(BatchSubmitEvents, "batch_submit_events", events=events)
    assert r.success, (r.error_code, r.error_field, r.message)
    assert len(r.data_hashes) == 4
    assert reg.functions.getEventCount(machine_id).call() == n + 4
    for i in range(3):
        got = reg.functions.getEventAt(machine_id, n + i).call()
        assert got[2] == 100 + i
        assert bytes(got[4]) == bytes(Web3.keccak(f"fare {i}".encode()))
    receipt = gen2_chain.w3.eth.get_transaction_receipt(r.tx_hash)
    assert receipt["to"] == "0x0000000000000000000000000000000000000805"  # one batchAll


def test_batch_requires_currency_per_event_and_names_the_event(gen2_chain, gen2_node):
    node, c, machine_id, _ = gen2_node
    ts = gen2_chain.latest_timestamp() - 1
    ok = Event(machine_id=str(machine_id), event_type=0, value="1", currency="USD", timestamp=ts)
    bad = Event(machine_id=str(machine_id), event_type=0, value="1", currency="usd", timestamp=ts)
    r = c.call(BatchSubmitEvents, "batch_submit_events", events=[ok, bad])
    assert not r.success and r.error_code == "VALIDATION_ERROR" and r.error_field == "currency", r
    assert r.message.startswith("events[1]: "), r.message


@pytest.mark.parametrize("fields,code,field", [
    (dict(currency="usd"), "VALIDATION_ERROR", "currency"),
    (dict(currency="US"), "VALIDATION_ERROR", "currency"),
    (dict(event_type=1, currency="USD"), "VALIDATION_ERROR", "currency"),
    (dict(trust_level=1), "VALIDATION_ERROR", "source_tx_hash"),
    (dict(source_chain_id=9990), "VALIDATION_ERROR", "source_chain_id"),
    (dict(value="1.5"), "TYPE_ERROR", "value"),
    (dict(machine_id="0"), "VALIDATION_ERROR", "machine_id"),
    (dict(event_type=2), "VALIDATION_ERROR", "event_type"),
    (dict(trust_level=3), "VALIDATION_ERROR", "trust_level"),
    (dict(source_tx_hash="0x1234"), "VALIDATION_ERROR", "source_tx_hash"),
    (dict(timestamp=0), "VALIDATION_ERROR", "timestamp"),
])
def test_validation_errors_carry_the_sdk_field(gen2_node, fields, code, field):
    node, c, machine_id, _ = gen2_node
    e = dict(machine_id=str(machine_id), event_type=0, value="1", currency="USD", timestamp=1_735_000_000)
    e.update(fields)
    r = c.call(ValidateEvent, "validate_event", event=Event(**e))
    assert not r.success and (r.error_code, r.error_field) == (code, field), (r.error_code, r.error_field, r.message)
    # the same through submit_event: refused before anything is stored or sent
    r2 = c.call(SubmitEvent, "submit_event", **e)
    assert not r2.success and (r2.error_code, r2.error_field) == (code, field)
    assert r2.intent_id == ""


def test_validate_event_returns_the_data_hash_without_sending(gen2_chain, gen2_node):
    node, c, machine_id, _ = gen2_node
    n = event_registry(gen2_chain).functions.getEventCount(machine_id).call()
    r = c.call(ValidateEvent, "validate_event", event=Event(machine_id=str(machine_id), event_type=0, value="1",
                                                            timestamp=4102444800, raw_data=list(b"hello peaqOS")),
               currency_omitted=True)
    assert r.success and r.data_hash == "0xd9771f07f13da8413d2f699f91bbb3564fcf23f633aec7f54775b47f73511ab9"
    assert event_registry(gen2_chain).functions.getEventCount(machine_id).call() == n


def test_chain_reverts_are_decoded_to_sdk_codes(gen2_chain, gen2_node):
    node, c, machine_id, _ = gen2_node
    future = gen2_chain.latest_timestamp() + 3600
    r = c.call(SubmitEvent, "submit_event", machine_id=str(machine_id), event_type=0, value="1", currency="USD",
               timestamp=future)
    assert not r.success and (r.error_code, r.error_field) == ("FUTURE_TIMESTAMP", "timestamp"), (r.error_code, r.message)
    r = c.call(SubmitEvent, "submit_event", machine_id="424242", event_type=0, value="1", currency="USD",
               timestamp=gen2_chain.latest_timestamp() - 1)
    assert not r.success and (r.error_code, r.error_field) == ("MACHINE_NOT_FOUND", "machine_id"), (r.error_code, r.message)
    r = c.call(SubmitEvent, "submit_event", machine_id=str(machine_id), event_type=0, value="1", currency="USD",
               timestamp=gen2_chain.latest_timestamp() - 1, metadata=list(b"x" * 2000))
    assert not r.success and (r.error_code, r.error_field) == ("METADATA_TOO_LARGE", "metadata"), (r.error_code, r.message)


def test_no_key_material_anywhere(gen2_node):
    node, c, machine_id, tmp = gen2_node
    secret = DEMO_KEY[2:].lower()
    assert secret not in node.output().lower()
    for f in (tmp / "data").rglob("*"):
        if f.is_file() and "keys" not in f.parts:
            assert secret not in f.read_bytes().decode("latin-1").lower(), f
    journal = tmp / "data" / "peaqos.log"
    assert journal.exists() and (journal.stat().st_mode & 0o777) == 0o600
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert any(line.get("status") == "pending" and line.get("tx_hash") for line in lines)
    assert any(line.get("status") == "confirmed" for line in lines)
    for s in c.statuses:
        assert secret not in repr(s).lower()


def test_rate_limit_refuses_and_sends_nothing(tmp_path, rclpy_ctx):
    with harness.TestChain() as chain:
        node = NodeProcess(tmp_path, node_params(tmp_path, chain, **{
            "chain.rate_limit_max_events": 2, "chain.rate_limit_window_seconds": 3600}), node_name="agent_rate").start()
        rnode = rclpy_ctx.create_node("rate_caller")
        try:
            node.wait_for_log("subscribed to /t/unused")
            c = Caller(rnode, "agent_rate", proc=node)
            r = activate_gen2(c)
            assert r.success, r.message
            mid = r.machine_id
            reg = event_registry(chain)
            ts = chain.latest_timestamp() - 1
            results = [c.call(SubmitEvent, "submit_event", machine_id=mid, event_type=1, value="1", timestamp=ts)
                       for _ in range(3)]
            assert [x.success for x in results] == [True, True, False]
            assert results[2].error_code == "RATE_LIMITED" and results[2].intent_id == ""
            assert reg.functions.getEventCount(int(mid)).call() == 2
        finally:
            rnode.destroy_node()
            node.stop()


def test_rpc_outage_and_kill_9_deliver_each_event_exactly_once(tmp_path, rclpy_ctx):
    """Intents accepted while the RPC is down survive a kill -9 of the node and are included
    exactly once when both come back."""
    with harness.TestChain() as chain:
        params = node_params(tmp_path, chain, **{"chain.receipt_timeout": "2.0"})
        node = NodeProcess(tmp_path, params, node_name="agent_outage").start()
        rnode = rclpy_ctx.create_node("outage_caller")
        try:
            node.wait_for_log("subscribed to /t/unused")
            c = Caller(rnode, "agent_outage", proc=node)
            r = activate_gen2(c)
            assert r.success, r.message
            mid = int(r.machine_id)
            reg = event_registry(chain)
            ts = chain.latest_timestamp() - 1
            chain.stop()
            ids = []
            for i in range(5):
                q = c.call(SubmitEvent, "submit_event", machine_id=str(mid), event_type=1, value=str(i),
                           timestamp=ts, no_wait=True)
                assert q.success and q.intent_id, (q.error_code, q.message)
                ids.append(q.intent_id)
            # one more that waits: answered with a clear code while the chain is down, still tracked
            w = c.call(SubmitEvent, "submit_event", machine_id=str(mid), event_type=1, value="5", timestamp=ts)
            assert not w.success and w.error_code == "RECEIPT_AWAIT_FAILED" and w.intent_id, (w.error_code, w.message)
            node.kill9()
            chain.restart()
            node2 = NodeProcess(tmp_path, params, name="after", node_name="agent_outage").start()
            try:
                node2.wait_for_log("subscribed to /t/unused")
                wait_until(lambda: reg.functions.getEventCount(mid).call() >= 6, 60, "6 events on chain", nodes=node2,
                           poll=0.5)
                sleep_scaled(3)  # anything sent twice would land by now
                values = sorted(reg.functions.getEventAt(mid, i).call()[2]
                                for i in range(reg.functions.getEventCount(mid).call()))
                assert values == [0, 1, 2, 3, 4, 5], (values, node2.output())
            finally:
                node2.stop()
        finally:
            rnode.destroy_node()
            if node.proc.poll() is None:
                node.stop()


def test_batches_queued_in_an_outage_share_a_transaction_and_a_bad_one_fails_alone(tmp_path, rclpy_ctx):
    """~/batch_submit_events calls that queue up while the RPC is down go out as one merged
    batchAll when it is back; a merged transaction that would revert is split, so only the bad
    call fails, with its own code, and the others are included."""
    with harness.TestChain() as chain:
        node = NodeProcess(tmp_path, node_params(tmp_path, chain, **{"chain.receipt_timeout": "90.0"}),
                           node_name="agent_merge").start()
        rnode = rclpy_ctx.create_node("merge_caller")
        try:
            node.wait_for_log("subscribed to /t/unused")
            c = Caller(rnode, "agent_merge", proc=node)
            r = activate_gen2(c)
            assert r.success, r.message
            mid = int(r.machine_id)
            reg = event_registry(chain)
            ts = chain.latest_timestamp() - 1
            cli = rnode.create_client(BatchSubmitEvents, "/agent_merge/batch_submit_events",
                                      qos_profile=QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
            assert cli.wait_for_service(timeout_sec=scaled(20))

            def batch(tag: str, n: int, timestamp: int) -> BatchSubmitEvents.Request:
                req = BatchSubmitEvents.Request()
                req.events = [Event(machine_id=str(mid), event_type=0, value=str(i + 1), currency="EUR",
                                    timestamp=timestamp, raw_data=list(f"{tag}{i}".encode())) for i in range(n)]
                return req

            def during_outage(reqs):
                """Send `reqs` while the chain is down, wait until each is queued, bring it back."""
                chain.stop()
                before = len(c.statuses)
                futs = [cli.call_async(q) for q in reqs]
                poll_until(lambda: sum(s.state == "queued" for s in c.statuses[before:]) >= len(reqs), 20, spin=rnode)
                chain.restart()
                wait_until(lambda: all(f.done() for f in futs), 90, "every batch call to answer", nodes=node, spin=rnode)
                return [f.result() for f in futs]

            n0 = reg.functions.getEventCount(mid).call()
            answers = during_outage([batch("a", 2, ts), batch("b", 3, ts), batch("c", 4, ts)])
            assert all(a.success for a in answers), [(a.error_code, a.message) for a in answers]
            assert len({a.tx_hash for a in answers}) == 1, "one transaction for the three calls"
            assert [len(a.data_hashes) for a in answers] == [2, 3, 4]
            assert reg.functions.getEventCount(mid).call() == n0 + 9
            receipt = chain.w3.eth.get_transaction_receipt(answers[0].tx_hash)
            assert receipt["to"] == "0x0000000000000000000000000000000000000805"
            rclpy.spin_once(rnode, timeout_sec=0.2)
            merged = {s.intent_id for s in c.statuses if s.state == "merged"}
            assert {a.intent_id for a in answers} <= merged

            # A batch from a clock far ahead reverts FutureTimestamp: only it fails.
            good, bad = during_outage([batch("d", 2, ts), batch("e", 1, int(time.time()) + 10**6)])
            assert good.success, (good.error_code, good.message)
            assert not bad.success and bad.error_code == "FUTURE_TIMESTAMP", (bad.error_code, bad.message)
            assert reg.functions.getEventCount(mid).call() == n0 + 11
            assert good.tx_hash not in {a.tx_hash for a in answers}
        finally:
            rnode.destroy_node()
            node.stop()


def test_legacy_activation_register_mint_did_and_rerun(tmp_path, rclpy_ctx):
    with harness.TestChain() as chain:
        node = NodeProcess(tmp_path, node_params(tmp_path, chain, **{"chain.generation": "legacy"}),
                           node_name="agent_legacy").start()
        rnode = rclpy_ctx.create_node("legacy_caller")
        try:
            node.wait_for_log("subscribed to /t/unused")
            c = Caller(rnode, "agent_legacy", proc=node)
            r = c.call(Activate, "activate", timeout=120, documentation_url="https://docs.example.com",
                       data_api="https://api.example.com/robot", data_visibility="public")
            assert r.success, (r.error_code, r.error_field, r.message, node.output())
            ident = chain.contract("IdentityRegistry", chain.gen1["identity_registry"])
            nft = chain.contract("MachineNFT", chain.gen1["machine_nft"])
            mid = ident.functions.machineIdOfOwner(DEMO_ADDRESS).call()
            assert str(mid) == r.machine_id and mid > 0
            assert str(nft.functions.tokenIdOf(mid).call()) == r.token_id
            assert r.did == f"did:peaq:{DEMO_ADDRESS}"
            attr = c.call(ReadDidAttribute, "read_did_attribute", did_address=r.did, name="machineId")
            assert attr.success and attr.found and attr.value == r.machine_id
            attr = c.call(ReadDidAttribute, "read_did_attribute", did_address=DEMO_ADDRESS, name="nope")
            assert attr.success and not attr.found
            nonce = chain.w3.eth.get_transaction_count(DEMO_ADDRESS)
            again = c.call(Activate, "activate", timeout=120, documentation_url="https://docs.example.com",
                           data_api="https://api.example.com/robot", data_visibility="public")
            assert again.success and again.machine_id == r.machine_id, again.message
            assert chain.w3.eth.get_transaction_count(DEMO_ADDRESS) == nonce  # nothing repeated
            reg = c.call(Register, "register")
            assert reg.success and reg.skipped and reg.machine_id == r.machine_id
            tok = c.call(TokenIdOf, "token_id_of", machine_id=r.machine_id)
            assert tok.success and tok.token_id == r.token_id
            mint = c.call(MintNft, "mint_nft", machine_id=r.machine_id)
            assert mint.success and mint.skipped
            # events go to the gen-1 registry
            ev = c.call(SubmitEvent, "submit_event", machine_id=r.machine_id, event_type=1, value="1",
                        timestamp=chain.latest_timestamp() - 1)
            assert ev.success, (ev.error_code, ev.message)
            reg1 = chain.contract("EventRegistryV1", chain.gen1["event_registry"])
            assert reg1.functions.getEventCount(mid).call() == 1
        finally:
            rnode.destroy_node()
            node.stop()


def test_machine_id_is_the_sdk_off_chain_id():
    assert int.from_bytes(Web3.keccak(abi_encode(["string", "bytes"], ["robot", CRED])), "big") == SN_MACHINE_ID


def test_legacy_proxy_activation_with_the_operator_key(tmp_path, rclpy_ctx):
    """Proxy mode: the operator (its key configured on the node, never sent over ROS) registers
    the machine for it, mints its NFT to it and records it in the operator's DID; the machine
    key writes the machine DID."""
    with harness.TestChain() as chain:
        op_acct = chain.accounts[1]
        # The operator registered itself beforehand (with its own tools).
        ident = chain.contract("IdentityRegistry", chain.gen1["identity_registry"])
        tx = ident.functions.register().transact({"from": op_acct.address, "value": 10**18})
        assert chain.w3.eth.wait_for_transaction_receipt(tx).status == 1
        op_id = ident.functions.machineIdOfOwner(op_acct.address).call()
        node = NodeProcess(tmp_path, node_params(tmp_path, chain, **{"chain.generation": "legacy"}),
                           env={"PEAQOS_OPERATOR_PRIVATE_KEY": harness.ANVIL_KEYS[1]}, node_name="agent_proxy").start()
        rnode = rclpy_ctx.create_node("proxy_caller")
        try:
            node.wait_for_log("subscribed to /t/unused")
            c = Caller(rnode, "agent_proxy", proc=node)
            r = c.call(Activate, "activate", timeout=120, operator_address=op_acct.address,
                       documentation_url="https://docs.example.com", data_api="https://api.example.com/robot",
                       data_visibility="private")
            assert r.success, (r.error_code, r.error_field, r.message, node.output())
            mid = ident.functions.machineIdOfOwner(DEMO_ADDRESS).call()
            assert str(mid) == r.machine_id and mid != op_id
            assert ident.functions.operatorOf(mid).call() == op_acct.address
            nft = chain.contract("MachineNFT", chain.gen1["machine_nft"])
            assert nft.functions.ownerOf(int(r.token_id)).call() == DEMO_ADDRESS
            a = c.call(ReadDidAttribute, "read_did_attribute", did_address=DEMO_ADDRESS, name="operator")
            assert a.found and a.value == f"did:peaq:{op_acct.address}"
            a = c.call(ReadDidAttribute, "read_did_attribute", did_address=op_acct.address, name="machines")
            assert a.found and a.value == f"[{mid}]"
            assert harness.ANVIL_KEYS[1][2:].lower() not in node.output().lower()
        finally:
            rnode.destroy_node()
            node.stop()


def test_legacy_identity_services_one_by_one(tmp_path, rclpy_ctx):
    """register_for (operator key), mint_nft to the machine, write_proxy_did_attributes
    (operator), register + write_machine_did_attributes (machine key), each read back."""
    from peaqos_node.srv import RegisterFor, WriteMachineDidAttributes, WriteProxyDidAttributes
    with harness.TestChain() as chain:
        op = chain.accounts[1]
        other = chain.accounts[2]          # a machine without a node of its own
        ident = chain.contract("IdentityRegistry", chain.gen1["identity_registry"])
        nft = chain.contract("MachineNFT", chain.gen1["machine_nft"])
        tx = ident.functions.register().transact({"from": op.address, "value": 10**18})
        chain.w3.eth.wait_for_transaction_receipt(tx)
        op_id = ident.functions.machineIdOfOwner(op.address).call()
        node = NodeProcess(tmp_path, node_params(tmp_path, chain, **{"chain.generation": "legacy"}),
                           env={"PEAQOS_OPERATOR_PRIVATE_KEY": harness.ANVIL_KEYS[1]}, node_name="agent_steps").start()
        rnode = rclpy_ctx.create_node("steps_caller")
        try:
            node.wait_for_log("subscribed to /t/unused")
            c = Caller(rnode, "agent_steps", proc=node)
            r = c.call(RegisterFor, "register_for", machine_address=other.address)
            assert r.success and not r.skipped, (r.error_code, r.message)
            mid = ident.functions.machineIdOfOwner(other.address).call()
            assert str(mid) == r.machine_id and ident.functions.operatorOf(mid).call() == op.address
            again = c.call(RegisterFor, "register_for", machine_address=other.address)
            assert again.success and again.skipped and again.machine_id == r.machine_id
            m = c.call(MintNft, "mint_nft", machine_id=r.machine_id, recipient=other.address, signer_address=op.address)
            assert m.success and not m.skipped, (m.error_code, m.message)
            assert nft.functions.ownerOf(int(m.token_id)).call() == other.address
            p = c.call(WriteProxyDidAttributes, "write_proxy_did_attributes", proxy_machine_id=str(op_id),
                       machine_ids=[r.machine_id])
            assert p.success, (p.error_code, p.message)
            a = c.call(ReadDidAttribute, "read_did_attribute", did_address=op.address, name="machines")
            assert a.found and a.value == f"[{mid}]"
            # the node's own machine: register, mint, machine DID with the machine key
            own = c.call(Register, "register")
            assert own.success and not own.skipped
            own_nft = c.call(MintNft, "mint_nft", machine_id=own.machine_id)
            assert own_nft.success
            w = c.call(WriteMachineDidAttributes, "write_machine_did_attributes", machine_id=own.machine_id,
                       nft_token_id=own_nft.token_id, documentation_url="https://d.example", data_api="https://a.example",
                       data_visibility="onchain")
            assert w.success and not w.skipped, (w.error_code, w.message)
            for name, want in (("machineId", own.machine_id), ("nftTokenId", own_nft.token_id), ("operator", ""),
                               ("data_visibility", "onchain")):
                a = c.call(ReadDidAttribute, "read_did_attribute", did_address=DEMO_ADDRESS, name=name)
                assert a.found and a.value == want, (name, a.value)
            bad = c.call(WriteMachineDidAttributes, "write_machine_did_attributes", machine_id=own.machine_id,
                         nft_token_id=own_nft.token_id, documentation_url="https://d", data_api="https://a",
                         data_visibility="secret")
            assert not bad.success and bad.error_field == "data_visibility", (bad.error_code, bad.error_field, bad.message)
        finally:
            rnode.destroy_node()
            node.stop()


def test_contract_addresses_are_taken_quoted_or_as_small_integers(tmp_path):
    """ROS reads an unquoted `0x…` parameter as a number: a real address becomes a float (lost),
    so the node stops, naming the parameter and how to quote it; a small one (a precompile)
    stays an integer and is taken as is."""
    addr = "0xa1e7a1e7a1e7a1e7a1e7a1e7a1e7a1e7a1e7a1e7"
    base = {"policy_file": str(tmp_path / "map.yaml"), "data_dir": str(tmp_path / "data"),
            "chain.rpc_urls": "['http://127.0.0.1:1']"}
    (tmp_path / "map.yaml").write_text("schema_version: 1\ntopics:\n  - topic: /t/unused\n    type: std_msgs/msg/String\n")
    code, out = run_node_expecting_failure(tmp_path, {**base, "chain.contracts.event_registry": addr})
    assert code != 0, out
    assert "chain.contracts.event_registry" in out and """-p 'chain.contracts.<name>:="0x…"'""" in out, out
    node = NodeProcess(tmp_path, {**base, "chain.contracts.event_registry": f'"{addr}"',
                                  "chain.contracts.batch_precompile": "0x0000000000000000000000000000000000000805"},
                       node_name="agent_addresses").start()
    try:
        node.wait_for_log("subscribed to /t/unused")
        assert f"chain.contracts.event_registry = {addr}" in node.output().lower()  # logged EIP-55
        assert "chain.contracts.batch_precompile = 0x0000000000000000000000000000000000000805" in node.output()
    finally:
        assert node.stop() == 0, node.tail()
