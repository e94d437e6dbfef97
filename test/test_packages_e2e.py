"""End to end in a real ROS 2 graph: rclpy robots publish, peaqos_node packages and signs,
an rclpy subscriber receives, and the real peaq SDK verifies every package."""
from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from peaqos_harness import (DEMO_ADDRESS, DEMO_DID, NodeProcess, call_service, logged_package_lines, poll_until, sdk_verify,
                             wait_until)

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import BatteryState, NavSatFix  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_msgs.msg import UnboundedSequences  # noqa: E402

from peaqos_node.msg import DataPackage  # noqa: E402

POLICY = """\
schema_version: 1
topics:
  - topic: /t/chatter
    type: std_msgs/msg/String
    qos: reliable
  - topic: /t/battery
    type: sensor_msgs/msg/BatteryState
    qos: reliable
    fields:
      - {path: serial_number, action: anonymize, strategy: hash}
      - {path: location, action: encrypt}
      - {path: cell_voltage, action: exclude}
  - topic: /t/fix
    type: sensor_msgs/msg/NavSatFix
    qos: reliable
    fields:
      - {path: latitude, action: anonymize, strategy: generalize}
      - {path: position_covariance, action: exclude}
  - topic: /t/arrays
    type: test_msgs/msg/UnboundedSequences
    qos: reliable
    queue_size: 10000
"""


def canonical(v) -> bytes:
    from peaq_os_sdk.stream._internal.canonical_json import canonical_json_bytes
    return canonical_json_bytes(v)


class Robot:
    """Publishers for the test topics and a subscriber for ~/data_packages."""

    def __init__(self, node):
        self.node = node
        q = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            "/t/chatter": node.create_publisher(String, "/t/chatter", q),
            "/t/battery": node.create_publisher(BatteryState, "/t/battery", q),
            "/t/fix": node.create_publisher(NavSatFix, "/t/fix", q),
            "/t/arrays": node.create_publisher(UnboundedSequences, "/t/arrays", q),
        }
        self.packages: list[DataPackage] = []
        self.sub = node.create_subscription(DataPackage, "/peaqos_node/data_packages", self.packages.append, q)

    def wait_matched(self, node: NodeProcess, timeout=15.0):
        # every test topic subscribed, and the node's package publisher matched with our subscriber
        # (in the graph is not enough: a package published before the match is not delivered)
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values())
                   and self.sub.get_publisher_count() > 0,
                   timeout, "peaqos_node to subscribe to every test topic", nodes=node, spin=self.node)

    def spin_until(self, pred, timeout=20.0) -> bool:
        return poll_until(pred, timeout, spin=self.node)

    def wait(self, pred, what: str, node: NodeProcess, timeout=20.0) -> None:
        wait_until(pred, timeout, what, nodes=node, spin=self.node)

    def by_topic(self, topic):
        return [p for p in self.packages if p.topic == topic]


def battery(i: int) -> BatteryState:
    m = BatteryState()
    m.header.stamp.sec = 1_767_225_600 + i  # 2026-01-01T00:00:00Z + i
    m.header.stamp.nanosec = 500_000_000
    m.header.frame_id = "base_link"
    m.voltage = 24.5
    m.temperature = float("nan")
    m.current = float("-inf")
    m.charge = float("nan")
    m.capacity = float("inf")
    m.percentage = 0.87
    m.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
    m.present = True
    m.cell_voltage = [3.7, 3.71, float("nan")]
    m.cell_temperature = [25.0, 25.5]
    m.location = "bay-3 / Zürich ☃"
    m.serial_number = f"SN-{i:04d}"
    return m


def fix(i: int) -> NavSatFix:
    m = NavSatFix()
    m.header.stamp.sec = 1_767_225_600
    m.latitude = 47.3769 + i * 1e-4
    m.longitude = 8.5417
    m.altitude = 408.25
    m.position_covariance = [0.1] * 9
    return m


def arrays(i: int) -> UnboundedSequences:
    from test_msgs.msg import BasicTypes
    m = UnboundedSequences()
    m.uint8_values = bytes([0, 1, 2, 255, i % 256])
    m.byte_values = [b"\x07", b"\x08"]
    m.int64_values = [-(2**63), 2**63 - 1, 0]
    m.uint64_values = [2**64 - 1, 2**53 + 1]
    m.float64_values = [1e16, 0.1, -0.0, 1e-7]
    m.string_values = ["", "naïve", "😀"]
    b = BasicTypes()
    b.int32_value = -5
    b.float32_value = 0.1
    b.uint64_value = 2**64 - 1
    m.basic_types_values = [b, BasicTypes()]
    return m


@pytest.fixture
def policy_file(tmp_path) -> Path:
    p = tmp_path / "map.yaml"
    p.write_text(POLICY)
    return p


def test_packages_verify_with_the_sdk_and_follow_the_field_rules(tmp_path, policy_file, ros_node):
    data_dir = tmp_path / "data"
    node = NodeProcess(tmp_path, {"policy_file": str(policy_file), "data_dir": str(data_dir)}).start()
    try:
        robot = Robot(ros_node)
        robot.wait_matched(node)
        for i in range(5):
            robot.pubs["/t/chatter"].publish(String(data=f"hello {i} ünïcode"))
            robot.pubs["/t/battery"].publish(battery(i))
            robot.pubs["/t/fix"].publish(fix(i))
            robot.pubs["/t/arrays"].publish(arrays(i))
        robot.wait(lambda: all(len(robot.by_topic(t)) >= 5 for t in robot.pubs), "5 packages per topic", node)
    finally:
        node.stop()

    for msg in robot.packages:
        result = sdk_verify(msg.package_json)
        assert result.valid, (result, msg.package_json)
        assert result.signer_did == DEMO_DID
        pkg = json.loads(msg.package_json)
        assert set(pkg) == {"did", "timestamp", "schemaVersion", "sequenceNumber", "payload", "signature", "signingKeyId"}
        assert pkg["sequenceNumber"] == msg.sequence_number
        assert pkg["timestamp"].endswith("Z")
        # package_json is the SDK's canonical JSON of the package itself
        assert canonical(pkg).decode() == msg.package_json

    # per-topic sequence numbers 0..4, in order
    for t in robot.pubs:
        assert [p.sequence_number for p in robot.by_topic(t)][:5] == list(range(5))

    chatter = json.loads(robot.by_topic("/t/chatter")[0].package_json)
    assert chatter["payload"] == {"data": "hello 0 ünïcode"}

    b = json.loads(robot.by_topic("/t/battery")[0].package_json)
    pl = b["payload"]
    assert "cell_voltage" not in pl                      # exclude
    assert pl["serial_number"] == {                       # anonymize: hash
        "__anonymized": True, "strategy": "hash",
        "value": "0x" + hashlib.sha256(canonical("SN-0000")).hexdigest()}
    assert pl["location"]["__encrypted"] is True          # encrypt
    assert pl["location"]["algorithm"] == "AES-256-GCM"
    assert "Zürich" not in robot.by_topic("/t/battery")[0].package_json
    assert len(base64.b64decode(pl["location"]["ciphertext"])) >= 12 + 16
    assert pl["temperature"] == "NaN" and pl["current"] == "-Infinity" and pl["capacity"] == "Infinity"
    assert pl["voltage"] == 24.5 and pl["percentage"] == pytest.approx(0.87)
    assert pl["cell_temperature"] == [25.0, 25.5]
    assert pl["header"]["frame_id"] == "base_link"
    # timestamp = the Header stamp
    ts = datetime.fromisoformat(b["timestamp"].replace("Z", "+00:00"))
    assert ts == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)

    f = json.loads(robot.by_topic("/t/fix")[0].package_json)["payload"]
    assert f["latitude"] == {"__anonymized": True, "strategy": "generalize", "value": "40-50"}
    assert f["longitude"] == 8.5417 and "position_covariance" not in f

    a = json.loads(robot.by_topic("/t/arrays")[0].package_json)["payload"]
    assert base64.b64decode(a["uint8_values"]) == bytes([0, 1, 2, 255, 0])
    assert base64.b64decode(a["byte_values"]) == b"\x07\x08"
    assert a["int64_values"] == [-(2**63), 2**63 - 1, 0]
    assert a["uint64_values"] == [2**64 - 1, 2**53 + 1]
    assert a["float64_values"] == [1e16, 0.1, -0.0, 1e-7]
    assert a["string_values"] == ["", "naïve", "😀"]
    assert a["basic_types_values"][0]["int32_value"] == -5
    assert a["basic_types_values"][0]["float32_value"] == 0.1
    assert a["basic_types_values"][0]["uint64_value"] == 2**64 - 1
    assert a["float32_values"] == [] and a["bool_values"] == []


def test_sequence_numbers_continue_after_restart(tmp_path, policy_file, ros_node):
    data_dir = tmp_path / "data"
    params = {"policy_file": str(policy_file), "data_dir": str(data_dir)}
    robot = Robot(ros_node)
    for run in range(2):
        node = NodeProcess(tmp_path, params, name=f"run{run}").start()
        try:
            robot.wait_matched(node)
            before = len(robot.by_topic("/t/chatter"))
            for i in range(3):
                robot.pubs["/t/chatter"].publish(String(data=f"run {run} msg {i}"))
            robot.wait(lambda: len(robot.by_topic("/t/chatter")) >= before + 3, f"3 packages of run {run}", node)
        finally:
            assert node.stop() == 0, node.output()
        # let DDS notice the publisher is gone before the next run matches
        robot.spin_until(lambda: ros_node.count_publishers("/peaqos_node/data_packages") == 0, timeout=10)
    seqs = [p.sequence_number for p in robot.by_topic("/t/chatter")]
    assert seqs == list(range(6)), seqs


def test_kill_9_loses_no_published_package(tmp_path, policy_file, ros_node):
    """Every package the node published is in its package log, even after SIGKILL mid-burst."""
    data_dir = tmp_path / "data"
    node = NodeProcess(tmp_path, {"policy_file": str(policy_file), "data_dir": str(data_dir)}).start()
    robot = Robot(ros_node)
    try:
        robot.wait_matched(node)
        msg = arrays(1)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and len(robot.by_topic("/t/arrays")) < 300:
            for _ in range(20):
                robot.pubs["/t/arrays"].publish(msg)
            rclpy.spin_once(ros_node, timeout_sec=0.0)
        node.kill9()
    finally:
        if node.proc.poll() is None:
            node.kill9()
    robot.spin_until(lambda: False, timeout=1.0)  # drain what was already on the wire
    received = robot.by_topic("/t/arrays")
    assert len(received) > 0, node.output()
    logged = logged_package_lines(data_dir)
    missing = [p.sequence_number for p in received if p.package_json not in logged]
    assert not missing, f"published but not in the package log: {missing[:10]}"

    # and after a restart the sequence continues past everything logged
    node2 = NodeProcess(tmp_path, {"policy_file": str(policy_file), "data_dir": str(data_dir)}, name="after").start()
    try:
        node2.wait_for_log("subscribed to /t/arrays")
        n = len(robot.packages)
        # Discovery may still list the killed process: publish until the new node answers.
        def answered() -> bool:
            robot.pubs["/t/arrays"].publish(msg)
            return robot.spin_until(lambda: len(robot.packages) > n, timeout=0.3)

        wait_until(answered, 20, "a package from the restarted node", nodes=node2, poll=0)
    finally:
        node2.stop()
    last_logged = max(json.loads(line)["sequenceNumber"] for line in logged)
    assert robot.packages[-1].sequence_number > last_logged


def test_status_service_and_diagnostics_report_address_and_counts(tmp_path, policy_file, ros_node):
    from diagnostic_msgs.msg import DiagnosticArray
    from peaqos_node.srv import GetStatus
    node = NodeProcess(tmp_path, {"policy_file": str(policy_file), "data_dir": str(tmp_path / "d")}).start()
    try:
        diags = []
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        robot = Robot(ros_node)
        robot.wait_matched(node)

        def one_more() -> bool:
            # a message sent while discovery still matches a stale endpoint of an earlier node can be
            # lost (volatile): send again until one is packaged
            robot.pubs["/t/chatter"].publish(String(data="x"))
            return robot.spin_until(lambda: len(robot.packages) >= 1, timeout=2.0)

        robot.wait(one_more, "a package", node)
        cli = ros_node.create_client(GetStatus, "/peaqos_node/status")
        res = call_service(ros_node, cli, GetStatus.Request(), timeout=10, proc=node)
        assert res.address == DEMO_ADDRESS and res.did == DEMO_DID
        topics = {t.topic: t for t in res.topics}
        assert set(topics) == {"/t/chatter", "/t/battery", "/t/fix", "/t/arrays"}
        chatter = topics["/t/chatter"]
        assert chatter.packaged >= 1 and chatter.last_sequence == chatter.packaged - 1
        assert topics["/t/battery"].type == "sensor_msgs/msg/BatteryState"
        assert topics["/t/fix"].last_sequence == -1
        # /diagnostics: one status per topic and one for the pipeline (bytes queued, accepting),
        # OK, with the counters as key/values
        robot.wait(lambda: any(
            any(st.name.endswith("/t/chatter") and int(dict((kv.key, kv.value) for kv in st.values).get("packaged", "0")) >= 1
                for st in d.status) for d in diags), f"/diagnostics to count the package (last: {diags[-1:]})", node,
            timeout=5)
        last = diags[-1]
        # ... and the gas watch's (the chain client is on; no chain answers here, so it is STALE)
        assert {st.name for st in last.status} == ({f"peaqos_node: {t}" for t in topics}
                                                   | {"peaqos_node: pipeline", "peaqos_node: gas"})
        pipe = next(dict((kv.key, kv.value) for kv in st.values) for st in last.status if st.name.endswith("pipeline"))
        assert pipe["accepting"] == "true" and pipe["max_queued_bytes"] == str(128 << 20), pipe
        assert res.accepting and res.refusing_reason == "" and res.max_queued_bytes == 128 << 20
        assert all(st.level in (b"\x00", 0) for st in last.status if st.name != "peaqos_node: gas")
        assert all(st.hardware_id == DEMO_DID for st in last.status)
    finally:
        node.stop()
    assert "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80" not in node.output()
