#!/usr/bin/env python3
"""End-to-end benchmark: the highest message rate one rclpy publisher pushes through DDS to
peaqos_node with no drops, and the node's resident memory at that load.

    . scripts/env.sh && python3 scripts/bench_e2e.py [--rates 1000,2000,3000,4000] [--seconds 5]

Publishes sensor_msgs/BatteryState (reliable) at each rate for the given time, then reads the
node's counters from ~/status: a rate passes when every published message was packaged and
none was dropped. Prints one line per rate and the node's peak RSS.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "77")

import rclpy  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import BatteryState  # noqa: E402

from peaqos_harness import NodeProcess  # noqa: E402
from peaqos_node.srv import GetStatus  # noqa: E402

POLICY = """schema_version: 1
topics:
  - topic: /bench/battery
    type: sensor_msgs/msg/BatteryState
    qos: {reliability: reliable, durability: volatile, depth: 1000}
    queue_size: 20000
    fields:
      - {path: serial_number, action: anonymize, strategy: hash}
      - {path: location, action: encrypt}
"""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="1000,2000,3000,4000,6000")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="peaqos-bench-"))
    (tmp / "map.yaml").write_text(POLICY)
    node = NodeProcess(tmp, {"policy_file": str(tmp / "map.yaml"), "data_dir": str(tmp / "data")}).start()
    rclpy.init()
    n = rclpy.create_node("bench_publisher")
    pub = n.create_publisher(BatteryState, "/bench/battery", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    cli = n.create_client(GetStatus, "/peaqos_node/status")
    try:
        node.wait_for_log("subscribed to /bench/battery")
        assert cli.wait_for_service(timeout_sec=20)
        while pub.get_subscription_count() == 0:
            rclpy.spin_once(n, timeout_sec=0.05)

        def status():
            f = cli.call_async(GetStatus.Request())
            while not f.done():
                rclpy.spin_once(n, timeout_sec=0.05)
            return f.result().topics[0]

        m = BatteryState()
        m.voltage, m.percentage, m.temperature = 24.1, 0.5, float("nan")
        m.cell_voltage = [3.7] * 6
        m.location, m.serial_number = "dock-1", "SN-BENCH"
        peak = 0
        for rate in [int(r) for r in args.rates.split(",")]:
            before = status()
            sent = 0
            t0 = time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < args.seconds:
                due = int(elapsed * rate)
                while sent < due:
                    m.header.stamp.sec = sent
                    pub.publish(m)
                    sent += 1
                peak = max(peak, rss_kb(node.proc.pid))
                time.sleep(0.0005)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                after = status()
                if after.packaged - before.packaged + after.dropped - before.dropped >= sent:
                    break
            packaged = after.packaged - before.packaged
            dropped = after.dropped - before.dropped
            ok = packaged == sent and dropped == 0
            print(f"rate {rate:6d} msg/s: sent {sent}, packaged {packaged}, dropped {dropped}, "
                  f"lost in DDS {sent - packaged - dropped} -> {'OK' if ok else 'DROPS'}; node RSS peak {peak / 1024:.1f} MB",
                  flush=True)
    finally:
        node.stop()
        rclpy.shutdown()


if __name__ == "__main__":
    main()
