"""Dataset anchoring end to end: a streamed topic is sealed into chunks, `~/seal_dataset` with
`anchor: true` signs the dataset manifest and queues an activity event whose raw data is that
manifest file, through the node's chain client on a real anvil with the gen-2 test contracts.
The event is read back with web3 (`EventRegistry.getEventAt`): its dataHash is keccak256 of the
manifest file, so it commits to every chunk id and the Merkle root."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "chain"))

from peaqos_harness import NodeProcess, wait_until  # noqa: E402

import rclpy
import harness
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from web3 import Web3  # noqa: E402

from std_msgs.msg import String  # noqa: E402
from peaqos_node.srv import GetStatus, SealDataset  # noqa: E402
from test_chain_services_e2e import Caller, activate_gen2, event_registry  # noqa: E402
from test_stream_e2e import OWNER_PK_HEX  # noqa: E402

POLICY = f"""\
schema_version: 1
topics:
  - topic: /a/log
    type: std_msgs/msg/String
    qos: {{reliability: reliable, durability: volatile, depth: 100}}
    stream:
      chunk: {{max_messages: 10, max_age: 1}}
      recipients: {{owner: "{OWNER_PK_HEX}"}}
"""

def publish_lines(rnode, node: NodeProcess, n: int) -> None:
    """Publish `n` lines on the streamed topic once the node subscribes (10 make one chunk)."""
    pub = rnode.create_publisher(String, "/a/log", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    wait_until(lambda: pub.get_subscription_count() > 0, 20, "the node to subscribe to /a/log", nodes=node, spin=rnode)
    for i in range(n):
        pub.publish(String(data=f"line {i}"))
        rclpy.spin_once(rnode, timeout_sec=0.01)


def sealed(c: Caller) -> int:
    return next(s for s in c.call(GetStatus, "status").streams if s.topic == "/a/log").chunks_sealed


def test_sealed_dataset_is_anchored_as_an_activity_event(tmp_path, rclpy_ctx):
    with harness.TestChain() as chain:
        (tmp_path / "map.yaml").write_text(POLICY)
        params = {
            "policy_file": str(tmp_path / "map.yaml"),
            "data_dir": str(tmp_path / "data"),
            "chain.rpc_urls": f"['{chain.rpc_url}']",
            "chain.receipt_timeout": "30.0",
            "chain.poll_interval": "0.05",
        }
        node = NodeProcess(tmp_path, params).start()
        rnode = rclpy_ctx.create_node("anchor_robot")
        c = Caller(rnode, proc=node)
        try:
            node.wait_for_log("subscribed to /a/log")
            publish_lines(rnode, node, 30)
            wait_until(lambda: sealed(c) >= 3, 60, "3 sealed chunks", nodes=node)

            # Not activated yet: the dataset is sealed and returned, the anchor refused by name.
            r = c.call(SealDataset, "seal_dataset", topic="/a/log", first_index=0, last_index=2, anchor=True)
            assert not r.success and (r.error_code, r.error_field) == ("MACHINE_ID_UNKNOWN", "anchor"), r
            assert r.path and Path(r.path).exists() and r.merkle_root and not r.anchor_intent_id

            act = activate_gen2(c)
            assert act.success, (act.error_code, act.message, node.output())
            mid = int(act.machine_id)
            reg = event_registry(chain)
            before = reg.functions.getEventCount(mid).call()

            r = c.call(SealDataset, "seal_dataset", topic="/a/log", first_index=0, last_index=2, anchor=True)
            assert r.success, (r.error_code, r.error_field, r.message)
            manifest_file = Path(r.path).read_bytes()
            want_hash = Web3.keccak(manifest_file)
            assert r.anchor_data_hash == "0x" + bytes(want_hash).hex()
            assert r.anchor_intent_id
            assert json.loads(manifest_file)["merkleRoot"] == r.merkle_root

            wait_until(lambda: reg.functions.getEventCount(mid).call() == before + 1, 60, "the anchor event on chain",
                       nodes=node)
            ev = reg.functions.getEventAt(mid, before).call()
            # MachineEvent: machineId, eventType, value, timestamp, dataHash, trustLevel,
            # sourceChainId, sourceTxHash, metadata, currency
            assert ev[0] == mid and ev[1] == 1 and ev[2] == 0 and ev[9] == ""
            assert bytes(ev[4]) == bytes(want_hash), "the on-chain dataHash commits to the manifest file"
            assert ev[3] <= chain.latest_timestamp()
            meta = json.loads(bytes(ev[8]))
            assert meta == {"kind": "peaqos.stream.dataset.v1", "topic": "/a/log", "first_index": 0,
                            "last_index": 2, "merkle_root": r.merkle_root}
            # The intent's outcome is on ~/tx_status.
            wait_until(lambda: any(s.intent_id == r.anchor_intent_id and s.state == "included" for s in c.statuses),
                       60, "tx_status included", nodes=node, spin=rnode)
        finally:
            node.stop()


@pytest.mark.parametrize("chain_params, code", [
    ({"chain.enabled": "false"}, "CHAIN_DISABLED"),
    # a machine id is known, but no RPC answers (nothing listens on port 1)
    ({"chain.rpc_urls": "['http://127.0.0.1:1']", "chain.machine_id": "42"}, "RPC_UNAVAILABLE"),
])
def test_anchor_that_cannot_be_queued_is_refused_by_name(tmp_path, rclpy_ctx, chain_params, code):
    (tmp_path / "map.yaml").write_text(POLICY)
    node = NodeProcess(tmp_path, {"policy_file": str(tmp_path / "map.yaml"), "data_dir": str(tmp_path / "data"),
                                  **chain_params}).start()
    rnode = rclpy_ctx.create_node("anchor_robot_offline")
    c = Caller(rnode, proc=node)
    try:
        node.wait_for_log("subscribed to /a/log")
        publish_lines(rnode, node, 10)
        wait_until(lambda: sealed(c) >= 1, 60, "a sealed chunk", nodes=node)
        r = c.call(SealDataset, "seal_dataset", topic="/a/log", first_index=0, last_index=0, anchor=True)
        assert not r.success and (r.error_code, r.error_field) == (code, "anchor"), r
        assert not r.anchor_intent_id
        r = c.call(SealDataset, "seal_dataset", topic="/a/log", first_index=0, last_index=0)
        assert r.success and not r.anchor_intent_id, r
    finally:
        node.stop()
