#!/usr/bin/env python3
"""Memory of peaqos_node while streaming a 10 MB/s topic (1 MiB sensor_msgs/Image at 10 Hz)
into encrypted chunks, sampled from /proc/<pid>/status every 0.25 s.

    . scripts/env.sh && python3 scripts/bench_stream.py [--seconds 20] [--hz 10] [--mib 1] [--no-stream]
        [--type image|pointcloud2] [--perf]

Prints the node's RSS at start, its peak (VmHWM), the RSS over the last half of the run (flat =
bounded), packages and chunks made, the wall-clock package throughput, and the bytes the node
wrote to disk per image byte packaged (write amplification, /proc/<pid>/io write_bytes).
--no-stream runs the same load without the stream: block (the package path alone) for comparison.
--type pointcloud2 sends sensor_msgs/PointCloud2 of the same size instead of Image. --perf samples the
node with `perf record -g` for the run and prints where its CPU time went (by function, self time).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 50))

import rclpy  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
import subprocess  # noqa: E402

from sensor_msgs.msg import Image, PointCloud2, PointField  # noqa: E402

from peaqos_harness import NodeProcess  # noqa: E402
from peaqos_node.srv import GetStatus  # noqa: E402


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--mib", type=float, default=1.0)
    ap.add_argument("--no-stream", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the data directory (removed by default: a run writes GBs)")
    ap.add_argument("--type", choices=("image", "pointcloud2"), default="image")
    ap.add_argument("--perf", action="store_true", help="profile the node with perf during the run")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    stream = "" if a.no_stream else "    stream: {chunk: {max_bytes: 4194304, max_age: 5}}\n"
    (tmp / "policy.yaml").write_text(
        "schema_version: 1\ntopics:\n  - topic: /bench/cam\n    type: sensor_msgs/msg/"
        + ("Image" if a.type == "image" else "PointCloud2") + "\n"
        "    qos: reliable\n    queue_size: 50\n" + stream)
    node = NodeProcess(tmp, {"policy_file": str(tmp / "policy.yaml"), "data_dir": str(tmp / "data")}).start()
    rclpy.init()
    n = rclpy.create_node("bench_stream")
    try:
        node.wait_for_log("subscribed to /bench/cam")
        msg_type = Image if a.type == "image" else PointCloud2
        pub = n.create_publisher(msg_type, "/bench/cam", QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
        deadline = time.monotonic() + 20
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(n, timeout_sec=0.05)
        size = int(a.mib * 1024 * 1024)
        if a.type == "image":
            img = Image(height=1024, width=size // 1024, encoding="mono8", step=size // 1024)
        else:  # x, y, z, intensity float32 per point
            fields = [PointField(name=nm, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                      for i, nm in enumerate(("x", "y", "z", "intensity"))]
            img = PointCloud2(height=1, width=size // 16, fields=fields, point_step=16, row_step=size, is_dense=True)
        img.data = bytes(range(256)) * (size // 256)
        pid = node.proc.pid
        perf = None
        if a.perf:
            perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o", str(tmp / "perf.data"), "-p", str(pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rss0, _ = rss_kib(pid)
        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()
        sent = 0
        next_sample = t0
        while time.monotonic() < t0 + a.seconds:
            target = t0 + sent / a.hz
            while time.monotonic() < target:
                if time.monotonic() >= next_sample:
                    samples.append((time.monotonic() - t0, rss_kib(pid)[0]))
                    next_sample += 0.25
                rclpy.spin_once(n, timeout_sec=0.005)
            img.header.frame_id = str(sent)
            pub.publish(img)
            sent += 1
        if perf is not None:
            time.sleep(1.0)  # the node finishing what it has queued is part of the work
            perf.send_signal(2)
            perf.wait()
        # let the node finish what it received
        cli = n.create_client(GetStatus, "/peaqos_node/status")
        cli.wait_for_service(timeout_sec=10)
        last = None
        for _ in range(40):
            fut = cli.call_async(GetStatus.Request())
            rclpy.spin_until_future_complete(n, fut, timeout_sec=5)
            st = fut.result()
            t = st.topics[0]
            s = st.streams[0] if st.streams else None
            now = (t.packaged, s.last_sequence if s else None)
            if now == last and (s is None or s.last_sequence == t.last_sequence):
                break
            last = now
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        _, hwm = rss_kib(pid)
        io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        written = int(io["write_bytes"])
        half = [r for (ts, r) in samples if ts >= a.seconds / 2]
        mib = lambda k: k / 1024  # noqa: E731
        print(f"load: {a.mib:g} MiB {a.type} at {a.hz:g} Hz for {a.seconds:g} s = {a.mib * a.hz:g} MiB/s; "
              f"stream {'off' if a.no_stream else 'on'}")
        print(f"sent {sent}, received {t.received}, packaged {t.packaged}, dropped {t.dropped} "
              f"({t.dropped_for_bytes} for the byte bound, {t.dropped_bytes / 2**20:.0f} MiB)"
              + (f", chunks sealed {s.chunks_sealed}, in chain up to sequence {s.last_sequence}, "
                 f"hand-overs dropped {s.handover_dropped}" if s else ""))
        print(f"RSS at start {mib(rss0):.1f} MiB; peak (VmHWM) {mib(hwm):.1f} MiB; second half of the run "
              f"min {mib(min(half)):.1f} / max {mib(max(half)):.1f} MiB")
        print(f"package throughput {t.packaged * a.mib / elapsed:.1f} MiB/s over {elapsed:.1f} s")
        payload = t.packaged * size
        print(f"written to disk (/proc/<pid>/io write_bytes) {written / 2**20:.0f} MiB for {payload / 2**20:.0f} MiB of "
              f"image bytes packaged: write amplification {written / max(payload, 1):.2f}")
        if perf is not None:
            rep = subprocess.run(["perf", "report", "-i", str(tmp / "perf.data"), "--stdio", "--no-children",
                                  "--sort", "sym", "-g", "none", "--percent-limit", "1.5"],
                                 capture_output=True, text=True).stdout
            print("where the node's CPU time went (perf, self time by function, >= 1.5 %):")
            print("\n".join(line for line in rep.splitlines() if line.strip() and not line.startswith("#")))
    finally:
        n.destroy_node()
        rclpy.shutdown()
        node.stop()
        if a.keep:
            print(f"data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
