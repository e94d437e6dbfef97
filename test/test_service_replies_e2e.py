"""A service reply is not lost to a caller that is still being discovered.

rmw_fastrtps drops a reply when the caller's reply reader is not matched within the reply
writer's `max_blocking_time` (100 ms by default). A caller that calls right after
`wait_for_service` on a busy machine then waits forever although the node did the work: CI lost a
`~/register_for` reply that way. The node therefore loads its packaged Fast DDS profile
(config/fastdds.xml), which allows 3 s, unless the operator gave a profile file of their own.

The race cannot be forced, so the tests use a caller whose reply reader can never match (it asks
for transient-local replies; the node's reply writer is volatile, while its request reader accepts
the caller's transient-local requests) and read from the node's log how long the node waited."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from peaqos_harness import NodeProcess, call_service, poll_until, wait_until

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from peaqos_node.srv import GetStatus  # noqa: E402

POLICY = "schema_version: 1\ntopics:\n  - topic: /t/unused\n    type: std_msgs/msg/String\n"
LOG_TIME = r"\[(?:DEBUG|ERROR)\] \[(\d+\.\d+)\]"


def start(tmp_path: Path, name: str, env: dict[str, str] | None = None) -> NodeProcess:
    (tmp_path / "map.yaml").write_text(POLICY)
    params = {"policy_file": str(tmp_path / "map.yaml"), "data_dir": str(tmp_path / f"data-{name}")}
    node = NodeProcess(tmp_path, params, env=env, name=name, node_name=f"replies_{name}").start()
    node.wait_for_log("subscribed to /t/unused")
    return node


def reply_wait(ros_node, node: NodeProcess) -> float:
    """Seconds the node waited to deliver a reply to a caller it can never match."""
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    cli = ros_node.create_client(GetStatus, f"/{node.node_name}/status", qos_profile=qos)
    try:
        # Its request writer matches the node's request reader; give discovery time, then call
        # (wait_for_service would wait for the reply reader too, which never matches).
        def seen() -> bool:
            cli.call_async(GetStatus.Request())
            return poll_until(lambda: node.requests_seen("~/status") > 0, 1.0, spin=ros_node)

        wait_until(seen, 30, "the node to receive a ~/status request", nodes=node, poll=0)
        node.wait_for_log("Error while sending service response", timeout=15)
    finally:
        ros_node.destroy_client(cli)
    out = node.output()
    req = re.search(LOG_TIME + r".*request ~/status$", out, re.M)
    err = re.search(LOG_TIME + r".*Error while sending service response", out)
    assert req and err, out
    return float(err.group(1)) - float(req.group(1))


def status_answers(ros_node, node: NodeProcess) -> None:
    cli = ros_node.create_client(GetStatus, f"/{node.node_name}/status")
    r = call_service(ros_node, cli, GetStatus.Request(), timeout=30, proc=node)
    assert r.address, r
    ros_node.destroy_client(cli)


def test_the_packaged_profile_waits_seconds_for_a_caller_being_discovered(tmp_path, ros_node):
    node = start(tmp_path, "packaged")
    try:
        assert re.search(r"Fast DDS profile \S+/share/peaqos_node/config/fastdds\.xml", node.output()), node.output()
        waited = reply_wait(ros_node, node)
        # Fast DDS's own bound is 0.1 s; the packaged profile's is 3 s.
        assert 2.5 <= waited <= 6.0, f"waited {waited:.2f} s for the caller's reply reader"
        # and the node serves the next caller normally
        status_answers(ros_node, node)
    finally:
        assert node.stop() == 0, node.output()


def test_an_operator_profile_file_is_left_in_charge(tmp_path, ros_node):
    xml = tmp_path / "operator.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<dds xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"><profiles>'
        '<publisher profile_name="service"><qos><reliability><max_blocking_time>'
        '<sec>1</sec><nanosec>0</nanosec></max_blocking_time></reliability></qos></publisher>'
        '</profiles></dds>\n')
    node = start(tmp_path, "operator", env={"FASTRTPS_DEFAULT_PROFILES_FILE": str(xml)})
    try:
        assert f"Fast DDS profile from FASTRTPS_DEFAULT_PROFILES_FILE={xml}" in node.output(), node.output()
        waited = reply_wait(ros_node, node)
        assert 0.8 <= waited < 2.5, f"waited {waited:.2f} s: the operator's 1 s bound was not used"
        status_answers(ros_node, node)
    finally:
        assert node.stop() == 0, node.output()
