"""Disk full: the node's data_dir on an 8 MiB tmpfs the test mounts itself (needs root or
CAP_SYS_ADMIN: the test fails, never skips, without). Fill the file system while messages keep
coming: the node refuses new messages (counted drops, ERROR on /diagnostics, ~/status
accepting=false), keeps every acknowledged package intact and readable, and accepts again by
itself once space is freed. Then the same with a `kill -9` while the disk is full and a restart;
the topic's chunk stream catches up with the package log afterwards."""
from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from peaqos_harness import NodeProcess, call_service, package_log, sdk_verify, wait_until

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from peaqos_node.msg import DataPackage  # noqa: E402
from peaqos_node.srv import GetStatus  # noqa: E402

TOPIC = "/df/blob"
POLICY = f"""\
schema_version: 1
topics:
  - topic: {TOPIC}
    type: std_msgs/msg/String
    qos: reliable
    stream: {{chunk: {{max_bytes: 262144, max_age: 1}}}}
"""
MSG_BYTES = 100_000


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "data"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"this test needs root or CAP_SYS_ADMIN to mount a tmpfs: mount said {r.stderr.strip()!r}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, name: str) -> int:
    """Write a filler file until the file system is full; its size."""
    n = 0
    with open(mnt / name, "wb", buffering=0) as f:
        block = b"\0" * 65536
        while True:
            try:
                n += f.write(block)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        try:
            while True:
                n += f.write(b"\0" * 512)
        except OSError:
            pass
    return n


def log_lines(data_dir: Path) -> list[dict]:
    """Every line of the package log; each must be a complete line (no torn record). The
    streamed topic's lines are references to its chunks (written once): read back through
    `peaqos-stream log`, each a complete package."""
    out = []
    for f in sorted((data_dir / "packages").rglob("seg-*.jsonl")):
        data = f.read_bytes()
        assert not data or data.endswith(b"\n"), f"{f} ends in a torn line"
        out += [json.loads(line) for line in data.splitlines() if line.strip()]
    if any("payloadRef" in p for p in out):
        out = [json.loads(line) for line in package_log(data_dir, TOPIC)]
    return out


class Robot:
    def __init__(self, ros_node):
        self.n = ros_node
        q = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = ros_node.create_publisher(String, TOPIC, q)
        self.acked: dict[int, str] = {}
        ros_node.create_subscription(DataPackage, "/peaqos_node/data_packages",
                                     lambda m: self.acked.__setitem__(m.sequence_number, m.package_json), q)
        self.diags: list[DiagnosticStatus] = []
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.diags.extend(m.status), 50)
        self.cli = ros_node.create_client(GetStatus, "/peaqos_node/status")
        self.i = 0

    def send(self, k: int = 1):
        for _ in range(k):
            self.pub.publish(String(data=f"{self.i:08d}" + "x" * MSG_BYTES))
            self.i += 1

    def status(self, node):
        return call_service(self.n, self.cli, GetStatus.Request(), proc=node)

    def keep_sending_until(self, pred, timeout, what, node):
        def step():
            self.send()
            return pred()
        wait_until(step, timeout, what, nodes=node, spin=self.n, poll=0.05)


def check_acked_intact(robot: Robot, data_dir: Path) -> list[dict]:
    lines = log_lines(data_dir)
    by_seq = {p["sequenceNumber"]: p for p in lines}
    assert [p["sequenceNumber"] for p in lines] == list(range(len(lines))), "sequence numbers with gaps"
    for seq, pj in robot.acked.items():
        assert seq in by_seq and json.loads(pj) == by_seq[seq], f"acknowledged package {seq} lost or changed"
    for p in lines[-3:] + lines[:3]:
        assert sdk_verify(json.dumps(p, separators=(",", ":"))).valid
    return lines


def test_disk_full_refuses_keeps_acknowledged_and_recovers(tmp_path, small_fs, ros_node):
    (tmp_path / "policy.yaml").write_text(POLICY)
    params = {"policy_file": str(tmp_path / "policy.yaml"), "data_dir": str(small_fs),
              "disk.min_free_bytes": "262144"}
    node = NodeProcess(tmp_path, params).start()
    robot = Robot(ros_node)
    try:
        node.wait_for_log(f"subscribed to {TOPIC}")
        wait_until(lambda: robot.pub.get_subscription_count() > 0, 20, "the node to subscribe", nodes=node,
                   spin=ros_node)
        robot.keep_sending_until(lambda: len(robot.acked) >= 5, 30, "first packages", node)

        # Fill the disk while messages keep coming: the node refuses, counted, ERROR.
        fill(small_fs, "filler")
        robot.keep_sending_until(lambda: not robot.status(node).accepting, 30, "the node to refuse messages", node)
        st = robot.status(node)
        assert st.refusing_reason, st
        before = st.topics[0].dropped
        robot.keep_sending_until(lambda: robot.status(node).topics[0].dropped >= before + 5, 30, "counted drops",
                                 node)
        wait_until(lambda: any(d.level == DiagnosticStatus.ERROR and "refusing" in d.message for d in robot.diags),
                   10, "an ERROR on /diagnostics", nodes=node, spin=ros_node)
        assert node.proc.poll() is None, "the node exited on a full disk"
        check_acked_intact(robot, small_fs)

        # Free space: it accepts again by itself, numbering continues without a gap.
        (small_fs / "filler").unlink()
        acked = len(robot.acked)
        robot.keep_sending_until(lambda: robot.status(node).accepting and len(robot.acked) >= acked + 5, 30,
                                 "packaging to resume after space was freed", node)
        check_acked_intact(robot, small_fs)

        # kill -9 while the disk is full, restart while still full, then free space.
        fill(small_fs, "filler2")
        robot.keep_sending_until(lambda: not robot.status(node).accepting, 30, "the node to refuse again", node)
        node.kill9()
        lines = check_acked_intact(robot, small_fs)
        node = NodeProcess(tmp_path, params, name="node2").start()
        node.wait_for_log(f"subscribed to {TOPIC}")
        wait_until(lambda: not robot.status(node).accepting, 30, "the restarted node to refuse on a full disk",
                   nodes=node, spin=ros_node)
        (small_fs / "filler2").unlink()
        robot.keep_sending_until(lambda: any(s > lines[-1]["sequenceNumber"] for s in robot.acked), 30,
                                 "the restarted node to package after space was freed", node)
        # The chunk stream catches up with the package log once there is space again.
        wait_until(lambda: (lambda r: r.streams[0].last_sequence == r.topics[0].last_sequence)(robot.status(node)),
                   30, "the chunk stream to catch up with the package log", nodes=node, spin=ros_node)
    finally:
        node.stop()
    lines = check_acked_intact(robot, small_fs)
    assert os.path.isdir(small_fs / "packages") and len(lines) >= len(robot.acked)
