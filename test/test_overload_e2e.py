"""Overload: a publisher bursts 4 MiB sensor_msgs/Image far above what the node can sign and
write. With the default byte bounds (pipeline.max_queued_bytes 128 MiB) the node's peak resident
memory (VmHWM) stays under 256 MiB, the overflow is counted (dropped_for_bytes, dropped_bytes on
~/status, WARN on /diagnostics), and every accepted message becomes a package the SDK verifies,
with gap-free sequence numbers."""
from __future__ import annotations

import json
import time
from pathlib import Path

from peaqos_harness import NodeProcess, call_service, sdk_verify, wait_until

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from peaqos_node.srv import GetStatus  # noqa: E402

TOPIC = "/ov/cam"
POLICY = f"""\
schema_version: 1
topics:
  - topic: {TOPIC}
    type: sensor_msgs/msg/Image
    qos: reliable
"""
IMAGE_BYTES = 4 << 20
BURST_SECONDS = 4.0
RSS_LIMIT_KIB = 256 * 1024


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def package_lines(data_dir: Path):
    """Each package line of the topic's log, one at a time (they are large)."""
    for f in sorted((data_dir / "packages").rglob("seg-*.jsonl")):
        with open(f) as fh:
            for line in fh:
                if line.strip():
                    yield line.strip()


def test_overload_with_4mib_images_stays_bounded(tmp_path, ros_node):
    (tmp_path / "policy.yaml").write_text(POLICY)
    data_dir = tmp_path / "data"
    node = NodeProcess(tmp_path, {"policy_file": str(tmp_path / "policy.yaml"), "data_dir": str(data_dir)}).start()
    try:
        node.wait_for_log(f"subscribed to {TOPIC}")
        pub = ros_node.create_publisher(Image, TOPIC, QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
        diags: list[DiagnosticStatus] = []
        ros_node.create_subscription(
            DiagnosticArray, "/diagnostics",
            lambda m: diags.extend(s for s in m.status if s.name == f"peaqos_node: {TOPIC}"), 50)
        wait_until(lambda: pub.get_subscription_count() > 0, 20, "the node to subscribe", nodes=node, spin=ros_node)

        img = Image(height=1024, width=IMAGE_BYTES // 1024, encoding="mono8", step=IMAGE_BYTES // 1024)
        img.data = bytes(range(256)) * (IMAGE_BYTES // 256)
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() < t0 + BURST_SECONDS:  # as fast as rclpy can publish
            img.header.frame_id = str(sent)
            pub.publish(img)
            sent += 1
        rate = sent / (time.monotonic() - t0)

        cli = ros_node.create_client(GetStatus, "/peaqos_node/status")
        st = {}

        def settled() -> bool:
            r = call_service(ros_node, cli, GetStatus.Request(), proc=node)
            t = r.topics[0]
            st.update(t=t, r=r)
            return t.queue_depth == 0 and t.queued_bytes == 0 and t.received == t.packaged + t.errors
        wait_until(settled, 60, "the node to package what it accepted", nodes=node, spin=ros_node)
        t = st["t"]
        hwm = vm_kib(node.proc.pid, "VmHWM")
        print(f"sent {sent} images of 4 MiB at {rate:.0f}/s; received {t.received}, packaged {t.packaged}, "
              f"dropped {t.dropped} ({t.dropped_for_bytes} for bytes, {t.dropped_bytes / 2**20:.0f} MiB); "
              f"VmHWM {hwm / 1024:.1f} MiB")
        assert hwm < RSS_LIMIT_KIB, f"peak RSS {hwm / 1024:.1f} MiB ≥ 256 MiB{node.tail()}"
        assert t.dropped_for_bytes > 0 and t.dropped_bytes >= t.dropped_for_bytes * IMAGE_BYTES, (
            f"expected drops for the byte bound: {t}")
        assert t.errors == 0 and t.packaged > 0
        assert st["r"].max_queued_bytes == 128 << 20 and st["r"].accepting
        wait_until(lambda: any(d.level == DiagnosticStatus.WARN and "for the byte bound" in d.message for d in diags),
                   10, "a WARN on /diagnostics naming the byte-bound drops", nodes=node, spin=ros_node)
    finally:
        node.stop()

    # Every accepted message is a package the SDK verifies, numbered without gaps.
    seqs = []
    for line in package_lines(data_dir):
        p = json.loads(line)
        assert sdk_verify(line).valid, f"package {p['sequenceNumber']} fails the SDK's verification"
        assert len(p["payload"]["data"]) >= IMAGE_BYTES * 4 // 3
        seqs.append(p["sequenceNumber"])
    assert seqs == list(range(t.packaged)), f"sequence numbers {seqs[:5]}… not 0..{t.packaged - 1}"
