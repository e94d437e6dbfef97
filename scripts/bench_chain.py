#!/usr/bin/env python3
"""Chain benchmarks of peaqos_node against anvil with the peaqOS test contracts (automine).

    . scripts/env.sh && python3 scripts/bench_chain.py [--batches 10] [--batch-size 50] [--latency 200] [--queued 10000]

1. events/s through the SDK's batch_submit_events (peaq-os-sdk 0.12.1), then the same through
   the node's ~/batch_submit_events (each call waits for inclusion) against the same chain and
   machine, in the same run, each from the same chain state (evm_snapshot / evm_revert): the
   ratio. The node sends what callers queue while a transaction is on its way as one merged
   batchAll (chain.merge_max_events); the SDK sends one transaction per call and waits for it;
2. latency from a ~/submit_event call to its included receipt: p50 and p99;
3. the node's resident memory with N intents queued on disk while the RPC is down.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT / "test" / "chain"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "78")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PEAQOS_TELEMETRY", "0")

import rclpy  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

import harness  # noqa: E402
from peaqos_harness import DEMO_KEY, NodeProcess  # noqa: E402
from peaqos_node.msg import Event  # noqa: E402
from peaqos_node.srv import Activate, BatchSubmitEvents, SubmitEvent  # noqa: E402
from test_chain_services_e2e import Caller, activate_gen2, node_params  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--latency", type=int, default=200)
    ap.add_argument("--queued", type=int, default=10000)
    ap.add_argument("--block-time", type=int, default=None,
                    help="seconds between blocks (interval mining, like a real chain); default: automine")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="peaqos-bench-chain-"))
    rclpy.init()
    rnode = rclpy.create_node("bench_chain")
    with harness.TestChain(block_time=args.block_time) as chain:
        fast = {"chain.receipt_timeout": "60.0", "chain.poll_interval": "0.02"}
        node = NodeProcess(tmp, node_params(tmp, chain, **fast)).start()
        try:
            node.wait_for_log("subscribed to /t/unused")
            c = Caller(rnode)
            r = activate_gen2(c)
            assert r.success, r.message
            mid = r.machine_id
            ts = chain.latest_timestamp() - 1
        finally:
            node.stop()

        # 1a. the SDK first (the node is stopped: one nonce owner at a time), then the chain is
        # reverted to the same snapshot so that the node starts from the very same state: anvil
        # recomputes the whole state root of every block, so its cost per block grows with the
        # events already stored (about 12 ms per 1,000 here) and whoever goes second would lose.
        snapshot = chain._rpc("evm_snapshot", [])
        from peaq_os_sdk import DeploymentConfig, PeaqosClient
        sdk = PeaqosClient(rpc_url=chain.rpc_url, private_key=DEMO_KEY,
                           deployment=DeploymentConfig(deployment_id="peaq-mainnet"))
        t0 = time.perf_counter()
        for b in range(args.batches):
            events = [dict(machine_id=int(mid), event_type=0, value=i + 1, currency="USD", timestamp=ts,
                           raw_data=f"s{b}e{i}".encode(), trust_level=0, source_chain_id=0,
                           source_tx_hash=None, metadata=b"") for i in range(args.batch_size)]
            sdk.batch_submit_events(events)
        sdk_rate = args.batches * args.batch_size / (time.perf_counter() - t0)
        assert chain._rpc("evm_revert", [snapshot]), "evm_revert refused"

        node = NodeProcess(tmp, node_params(tmp, chain, **fast), name="batches").start()
        try:
            node.wait_for_log("subscribed to /t/unused")
            # 1b. the node: every batch call in flight at once (the outbox owns the nonces, so it
            # need not wait for one receipt before sending the next transaction); each call
            # answers when its batch is included.
            # A deep request queue: with ROS's default of 10, a burst of calls can overwrite requests
            # the node has not acknowledged yet.
            cli = rnode.create_client(BatchSubmitEvents, "/peaqos_node/batch_submit_events",
                                      qos_profile=QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
            assert cli.wait_for_service(timeout_sec=20)
            reqs = []
            for b in range(args.batches):
                req = BatchSubmitEvents.Request()
                req.events = [Event(machine_id=mid, event_type=0, value=str(i + 1), currency="USD", timestamp=ts,
                                    raw_data=list(f"b{b}e{i}".encode())) for i in range(args.batch_size)]
                reqs.append(req)
            t0 = time.perf_counter()
            futs = [cli.call_async(req) for req in reqs]
            while not all(f.done() for f in futs):
                rclpy.spin_once(rnode, timeout_sec=0.01)
            node_rate = args.batches * args.batch_size / (time.perf_counter() - t0)
            bad = [f.result().message for f in futs if not f.result().success]
            assert not bad, bad[:3]

            # 2. latency of single submits
            lat = []
            for i in range(args.latency):
                t = time.perf_counter()
                res = c.call(SubmitEvent, "submit_event", machine_id=mid, event_type=1, value=str(i), timestamp=ts)
                assert res.success, res.message
                lat.append((time.perf_counter() - t) * 1000)
            lat.sort()
            p50 = statistics.median(lat)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        finally:
            node.stop()

        # 3. memory with intents queued while the RPC is down
        node = NodeProcess(tmp, node_params(tmp, chain, **fast), name="queued").start()
        try:
            node.wait_for_log("subscribed to /t/unused")
            chain.stop()
            base = rss_mb(node.proc.pid)
            t0 = time.perf_counter()
            for i in range(args.queued):
                res = c.call(SubmitEvent, "submit_event", machine_id=mid, event_type=1, value=str(i), timestamp=ts,
                             no_wait=True)
                assert res.success, res.message
            enqueue_rate = args.queued / (time.perf_counter() - t0)
            queued_rss = rss_mb(node.proc.pid)
        finally:
            node.kill9()
    print(json.dumps({
        "batch_events_per_s_node": round(node_rate, 1),
        "batch_events_per_s_sdk": round(sdk_rate, 1),
        "ratio": round(node_rate / sdk_rate, 1),
        "mining": f"{args.block_time} s blocks" if args.block_time else "automine",
        "submit_latency_ms_p50": round(p50, 1),
        "submit_latency_ms_p99": round(p99, 1),
        "queued_intents": args.queued,
        "durable_enqueue_per_s": round(enqueue_rate, 1),
        "rss_mb_idle": round(base, 1),
        "rss_mb_with_queued_intents": round(queued_rss, 1),
    }, indent=1))
    rclpy.shutdown()


if __name__ == "__main__":
    main()
