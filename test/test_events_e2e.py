"""Event rules end to end: an rclpy robot publishes a fare topic (std_msgs/Float64, euros), an
odometry topic (nav_msgs/Odometry) and a temperature topic with a clock far ahead; the real
node turns them into peaqOS events through its chain client on a real anvil running the gen-2
test contracts. Everything is read back independently of the node: events with web3
(`EventRegistry.getEventAt`), raw data from `<data_dir>/events/raw/`, packages with the SDK's
`verify_data_package`."""
from __future__ import annotations

import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "chain"))

from peaqos_harness import NodeProcess, run_node_expecting_failure, sdk_verify, sleep_scaled, wait_until  # noqa: E402

import rclpy
import harness
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from web3 import Web3  # noqa: E402

from nav_msgs.msg import Odometry  # noqa: E402
from sensor_msgs.msg import Temperature  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402
from peaqos_node.srv import GetStatus  # noqa: E402
from test_chain_services_e2e import Caller, activate_gen2, event_registry  # noqa: E402

POLICY = """\
schema_version: 1
topics:
  - topic: /orders/fare
    type: std_msgs/msg/Float64
    qos: {reliability: reliable, durability: volatile, depth: 100}
    events:
      - name: fare
        event_type: revenue
        value: {field: data}
        scale: 100
        rounding: half_even
        currency: EUR
        metadata: '{"seq":${$last_seq}}'
  - topic: /odom
    type: nav_msgs/msg/Odometry
    qos: {reliability: reliable, durability: volatile, depth: 100}
    fields:
      - {path: child_frame_id, action: exclude}
    events:
      - {name: distance, event_type: activity, value: {sum: twist.twist.linear.x}, scale: 1000, rounding: down,
         window: {messages: 5}, trust_level: 2}
      - {name: odo, event_type: activity, value: {increase: pose.pose.position.x}, scale: 10, rounding: down,
         window: {messages: 5}}
  - topic: /beacon
    type: sensor_msgs/msg/Temperature
    qos: {reliability: reliable, durability: volatile, depth: 100}
    events:
      - {name: beacon, event_type: activity, value: count}
"""


def params(tmp: Path, chain, policy: str = POLICY, **extra) -> dict[str, str]:
    f = tmp / "map.yaml"
    f.write_text(policy)
    p = {
        "policy_file": str(f),
        "data_dir": str(tmp / "data"),
        "chain.rpc_urls": f"['{chain.rpc_url}']",
        "chain.receipt_timeout": "30.0",
        "events.max_age": "1.0",
    }
    p.update({k: str(v) for k, v in extra.items()})
    return p


def iso_seconds(ts: str) -> int:
    return math.floor(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


class Robot:
    def __init__(self, node):
        self.node = node
        q = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.fare = node.create_publisher(Float64, "/orders/fare", q)
        self.odom = node.create_publisher(Odometry, "/odom", q)
        self.beacon = node.create_publisher(Temperature, "/beacon", q)

    def wait_matched(self, node: NodeProcess, timeout=20.0):
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in (self.fare, self.odom, self.beacon)), timeout,
                   "the node to subscribe to the robot's topics", nodes=node, spin=self.node)
        sleep_scaled(1.0)  # let the node's side of discovery match us too

    def send_fare(self, v: float):
        self.fare.publish(Float64(data=v))

    def send_odom(self, stamp: int, speed: float, x: float):
        m = Odometry()
        m.header.stamp.sec = stamp
        m.header.frame_id = "odom"
        m.child_frame_id = "base_link"
        m.twist.twist.linear.x = speed
        m.pose.pose.position.x = float(x)
        self.odom.publish(m)

    def send_beacon(self, stamp: int):
        m = Temperature()
        m.header.stamp.sec = stamp
        m.temperature = 21.5
        self.beacon.publish(m)


def status(c: Caller):
    r = c.call(GetStatus, "status")
    return r, {s.rule: s for s in r.event_rules}


def chain_events(chain, mid: int):
    reg = event_registry(chain)
    return [reg.functions.getEventAt(mid, i).call() for i in range(reg.functions.getEventCount(mid).call())]


def raw_of(data_dir: Path, data_hash: bytes) -> bytes:
    return (data_dir / "events" / "raw" / f"0x{data_hash.hex()}.json").read_bytes()


def packages_of(raw: bytes) -> list[dict]:
    v = json.loads(raw)
    return v if isinstance(v, list) else [v]


def test_robot_topics_become_events_on_chain(tmp_path, rclpy_ctx):
    with harness.TestChain(block_time=1) as chain:
        data = tmp_path / "data"
        p = params(tmp_path, chain)
        node = NodeProcess(tmp_path, p).start()
        rnode = rclpy_ctx.create_node("robot")
        robot = Robot(rnode)
        c = Caller(rnode, proc=node)
        node2 = None
        try:
            node.wait_for_log("events: 4 rule(s) loaded")
            robot.wait_matched(node)

            # 1. Before the machine is activated: events are produced and held, never dropped;
            #    a NaN and a negative fare are skipped and reported.
            for v in (12.29, 7.5, float("nan"), -3.0):
                robot.send_fare(v)
            wait_until(lambda: status(c)[1]["fare"].produced == 2, 60, "2 fare events produced", nodes=node)
            sleep_scaled(1.5)
            _, st = status(c)
            fare = st["fare"]
            assert fare.pending == 2 and fare.submitted == 0 and "no machine id" in fare.held_reason, fare
            assert dict(zip(fare.skip_reasons, fare.skip_counts)) == {"not_finite": 1, "negative": 1}

            # 2. Activation through ~/activate: its machine id is persisted and the held events go.
            r = activate_gen2(c)
            assert r.success, (r.error_code, r.message, node.output())
            mid = int(r.machine_id)
            assert (data / "machine_id").read_text().strip() == str(mid)
            wait_until(lambda: len(chain_events(chain, mid)) == 2, 60, "held fares on chain", nodes=node)

            # 3. Odometry: 5 messages → one distance and one odo event (counter reset at x=2).
            t0 = chain.latest_timestamp() - 100
            xs = [10, 12, 15, 2, 6]
            for i, x in enumerate(xs):
                robot.send_odom(t0 + i, 0.5, x)
            # 4. A robot clock one hour ahead: the event time is clamped to the chain's.
            robot.send_beacon(int(time.time()) + 3600)
            wait_until(lambda: len(chain_events(chain, mid)) == 5, 60, "odom + beacon events", nodes=node)

            # 5. kill -9 in the middle of a window: 3 messages, kill, start, 2 more.
            for i, x in enumerate([7, 8, 9]):
                robot.send_odom(t0 + 5 + i, 0.25, x)
            sleep_scaled(1.0)
            node.kill9()
            node2 = NodeProcess(tmp_path, p, name="after").start()
            c.proc = node2  # service calls now go to (and report the log of) the restarted node
            node2.wait_for_log("events: replayed 3 package(s) of /odom")
            node2.wait_for_log("subscribed to /beacon")
            sleep_scaled(1.0)
            robot.wait_matched(node2)
            for i, x in enumerate([10, 11]):
                robot.send_odom(t0 + 8 + i, 0.25, x)
            wait_until(lambda: len(chain_events(chain, mid)) == 7, 60, "second odom window", nodes=node2)

            # 6. Anvil down for a minute: the event waits, then arrives exactly once.
            chain.stop()
            down = time.monotonic()
            robot.send_fare(3.335)
            wait_until(lambda: status(c)[1]["fare"].produced == 3, 60, "fare produced while chain down", nodes=node2)
            sleep_scaled(3)
            _, st = status(c)
            assert st["fare"].pending == 1 and "unreachable" in st["fare"].held_reason, st["fare"]
            time.sleep(max(0.0, 60 - (time.monotonic() - down)))
            assert status(c)[1]["fare"].pending == 1
            chain.restart()
            wait_until(lambda: len(chain_events(chain, mid)) == 8, 60, "fare after outage", nodes=node2)
            sleep_scaled(4)  # anything sent twice would land by now

            evs = chain_events(chain, mid)
            assert len(evs) == 8, evs
            # MachineEvent: machineId, eventType, value, timestamp, dataHash, trustLevel,
            # sourceChainId, sourceTxHash, metadata, currency
            by_kind = sorted((e[1], e[2], e[9], e[5]) for e in evs)
            assert by_kind == sorted([
                (0, 1229, "EUR", 0), (0, 750, "EUR", 0), (0, 334, "EUR", 0),  # 3.335 → 333.5 → half-even 334
                (1, 2500, "", 2), (1, 1250, "", 2),  # 5 × 0.5, 5 × 0.25 (× 1000)
                (1, 110, "", 0),  # 10→12→15 (+5), reset to 2 (+2), →6 (+4) = 11 × 10
                (1, 50, "", 0),   # 6→7→8→9→10→11 = 5 × 10, across the restart
                (1, 1, "", 0),    # beacon
            ]), by_kind
            for e in evs:
                raw = raw_of(data, e[4])
                assert Web3.keccak(raw) == e[4], "keccak256(stored raw data) == on-chain dataHash"
                pkgs = packages_of(raw)
                for pk in pkgs:
                    assert sdk_verify(json.dumps(pk, separators=(",", ":"), sort_keys=True)), pk
                last_ts = iso_seconds(pkgs[-1]["timestamp"])
                if e[2] == 1 and len(pkgs) == 1 and "temperature" in pkgs[0]["payload"]:
                    # beacon: data time an hour ahead, clamped to the chain's latest block
                    assert e[3] < last_ts - 3000, (e[3], last_ts)
                    assert abs(e[3] - chain.latest_timestamp()) < 600
                elif e[9] == "EUR":
                    # receive-time stamps: the data's time, or the latest block's when that is older
                    assert last_ts - 30 <= e[3] <= last_ts, (e, last_ts)
                else:
                    assert e[3] == last_ts, (e, last_ts)  # header stamps 100 s in the past
                if e[9] == "EUR":
                    assert json.loads(e[8])["seq"] == pkgs[0]["sequenceNumber"]
                    cents = round(pkgs[0]["payload"]["data"] * 100)
                    assert abs(e[2] - cents) <= 1
            # the window completed after the restart holds exactly packages 5..9 of /odom
            second = [packages_of(raw_of(data, e[4])) for e in evs if e[1] == 1 and e[2] == 1250]
            assert [pk["sequenceNumber"] for pk in second[0]] == [5, 6, 7, 8, 9]
            assert all("child_frame_id" not in pk["payload"] for pk in second[0])

            _, st = status(c)
            assert (st["fare"].produced, st["fare"].submitted, st["fare"].included) == (3, 3, 3), st["fare"]
            assert (st["distance"].included, st["odo"].included, st["beacon"].included) == (2, 2, 1)
            assert st["odo"].resets == 1
            assert all(s.pending == 0 and s.held_reason == "" for s in st.values())
        finally:
            rnode.destroy_node()
            for n in (node, node2):
                if n is not None and n.proc and n.proc.poll() is None:
                    n.stop()


def test_burst_above_the_rate_limit_is_held_not_lost(tmp_path, rclpy_ctx):
    policy = """\
schema_version: 1
topics:
  - topic: /beacon
    type: sensor_msgs/msg/Temperature
    qos: {reliability: reliable, durability: volatile, depth: 100}
    events:
      - {name: beacon, event_type: activity, value: {field: temperature}, scale: 1, rounding: down}
"""
    with harness.TestChain() as chain:
        p = params(tmp_path, chain, policy, **{
            "chain.rate_limit_max_events": 3, "chain.rate_limit_window_seconds": 8, "events.max_age": "0.2",
            "chain.max_value_per_tx": 100})
        node = NodeProcess(tmp_path, p, node_name="agent_burst").start()
        rnode = rclpy_ctx.create_node("burst_robot")
        c = Caller(rnode, "agent_burst", proc=node)
        q = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        pub = rnode.create_publisher(Temperature, "/beacon", q)
        try:
            node.wait_for_log("events: 1 rule(s) loaded")
            r = activate_gen2(c)
            assert r.success, r.message
            mid = int(r.machine_id)
            wait_until(lambda: pub.get_subscription_count() > 0, 20, "the node to subscribe to /beacon", nodes=node,
                       spin=rnode)
            sleep_scaled(1.0)
            ts = chain.latest_timestamp() - 50
            for i in range(8):
                m = Temperature()
                m.header.stamp.sec = ts + i
                m.temperature = float(i + 1) if i < 7 else 500.0  # the last one is over max_value_per_tx
                pub.publish(m)
            wait_until(lambda: len(chain_events(chain, mid)) == 3, 30, "first 3 events", nodes=node)
            _, st = status(c)
            assert st["beacon"].pending == 4 and "RATE_LIMITED" in st["beacon"].held_reason, st["beacon"]
            assert st["beacon"].produced == 8
            wait_until(lambda: len(chain_events(chain, mid)) == 7, 60, "all 7 events", nodes=node)
            sleep_scaled(3)
            values = sorted(e[2] for e in chain_events(chain, mid))
            assert values == [1, 2, 3, 4, 5, 6, 7], values
            _, st = status(c)
            assert (st["beacon"].produced, st["beacon"].submitted, st["beacon"].included, st["beacon"].pending) == (8, 7, 7, 0)
            assert dict(zip(st["beacon"].skip_reasons, st["beacon"].skip_counts)) == {"value_cap": 1}
            dropped = json.loads(next((tmp_path / "data" / "events" / "dropped").glob("*.json")).read_text())
            assert dropped["event"]["value"] == "500" and "VALUE_CAP_EXCEEDED" in dropped["reason"]
        finally:
            rnode.destroy_node()
            node.stop()


@pytest.mark.parametrize("rule,want", [
    ("{name: fare, event_type: revenue, value: {field: nope}, scale: 100, rounding: down, currency: EUR}",
     'topics[0].events[0].value.field: rule "fare": field "nope" does not exist in std_msgs/msg/Float64'),
    ("{name: fare, event_type: revenue, value: {field: data}, scale: 0, rounding: down, currency: EUR}",
     'topics[0].events[0].scale: rule "fare": must be > 0'),
    ("{name: fare, event_type: revenue, value: {field: data}, scale: 100, rounding: down, currency: euro}",
     'topics[0].events[0].currency: rule "fare": "euro" must match ^[A-Z0-9]{3,10}$'),
    ("{name: fare, event_type: revenue, value: {field: data}, scale: 100, rounding: down, currency: EUR, trust_level: 1}",
     'topics[0].events[0].source_tx_hash_field: rule "fare": trust_level 1 needs'),
])
def test_bad_rules_stop_the_node_naming_rule_and_field(tmp_path, rule, want):
    f = tmp_path / "bad.yaml"
    f.write_text(f"schema_version: 1\ntopics:\n  - topic: /orders/fare\n    type: std_msgs/msg/Float64\n    events:\n      - {rule}\n")
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(f), "data_dir": str(tmp_path / "d"),
                                                      "chain.enabled": "false"})
    assert code != 0
    assert f"{f}: {want}" in out, out


def test_a_field_the_field_rules_encrypt_can_never_fire(tmp_path):
    f = tmp_path / "enc.yaml"
    f.write_text("schema_version: 1\ntopics:\n  - topic: /odom\n    type: nav_msgs/msg/Odometry\n    fields:\n"
                 "      - {path: twist, action: encrypt}\n    events:\n"
                 "      - {name: dist, event_type: activity, value: {sum: twist.twist.linear.x}, scale: 1, rounding: down}\n")
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(f), "data_dir": str(tmp_path / "d"),
                                                      "chain.enabled": "false"})
    assert code != 0
    assert (f'{f}: topics[0].events[0].value.sum: rule "dist": field "twist.twist.linear.x" is encrypted by the '
            "topic's field rules") in out, out


def test_with_the_chain_client_disabled_events_are_kept_pending(tmp_path, rclpy_ctx):
    f = tmp_path / "map.yaml"
    f.write_text(POLICY)
    node = NodeProcess(tmp_path, {"policy_file": str(f), "data_dir": str(tmp_path / "data"), "chain.enabled": "false"},
                       node_name="agent_nochain").start()
    rnode = rclpy_ctx.create_node("nochain_robot")
    robot = Robot(rnode)
    c = Caller(rnode, "agent_nochain", proc=node)
    try:
        node.wait_for_log("events: 4 rule(s) loaded")
        robot.wait_matched(node)
        robot.send_fare(1.05)
        wait_until(lambda: status(c)[1]["fare"].pending == 1, 60, "pending fare", nodes=node)
        fare = status(c)[1]["fare"]
        assert fare.produced == 1 and "chain client disabled" in fare.held_reason, fare
        pending = list((tmp_path / "data" / "events" / "pending").glob("*.json"))
        assert len(pending) == 1 and json.loads(pending[0].read_text())["event"]["value"] == "105"
    finally:
        rnode.destroy_node()
        node.stop()


def test_a_machine_id_parameter_and_a_chain_refusal_are_reported(tmp_path, rclpy_ctx):
    """`chain.machine_id` is used as given; a machine the registry does not know makes the batch
    fail on chain: the event is counted as failed with the SDK's code, never resubmitted."""
    with harness.TestChain() as chain:
        p = params(tmp_path, chain, **{"chain.machine_id": "12345"})
        node = NodeProcess(tmp_path, p, node_name="agent_unknown").start()
        rnode = rclpy_ctx.create_node("unknown_robot")
        robot = Robot(rnode)
        c = Caller(rnode, "agent_unknown", proc=node)
        try:
            node.wait_for_log("events: 4 rule(s) loaded")
            robot.wait_matched(node)
            robot.send_fare(2.0)
            wait_until(lambda: status(c)[1]["fare"].failed == 1, 60, "failed fare", nodes=node)
            r, st = status(c)
            assert r.events_machine_id == "12345"
            fare = st["fare"]
            assert (fare.produced, fare.submitted, fare.included, fare.pending) == (1, 1, 0, 0), fare
            reasons = dict(zip(fare.skip_reasons, fare.skip_counts))
            assert any(k.startswith("chain_") for k in reasons), reasons
            rec = json.loads(next((tmp_path / "data" / "events" / "submitted").glob("fare-*.json")).read_text())
            assert rec["machine_id"] == "12345" and rec["state"] == "failed" and rec["code"], rec
            sleep_scaled(3)
            assert status(c)[1]["fare"].submitted == 1  # not resubmitted
        finally:
            rnode.destroy_node()
            node.stop()
