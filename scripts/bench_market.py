#!/usr/bin/env python3
"""How many stream purchases peaqos_node settles per minute as a Machine Markets seller, and how long
from "payment verified" (the server's payment_proof.recorded) to "access prepared" (the node's
prepare-access), p50 / p99 — each payment a real ERC-20 transfer on the local chain that the node
checks itself, each sale a revenue event through its outbox.

    . scripts/env.sh && python3 scripts/bench_market.py [--purchases 220] [--sequential 20] [--chunks 20]

Real parts: the local test chain (anvil + peaqOS stand-ins + a test USDT at peaq's address), the local
orchestrator (test/market/orchestrator.py), the release node in a ROS 2 graph. The buyer side is the
orchestrator's test control (purchases made and marked paid with the buyer's real transfer hash), so
the figure is the seller's work: quote, on-chain payment check, key wrapping, prepare-access,
delivery event, revenue event. Also prints the node's peak RSS and when the last revenue event was
included on chain.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT / "test" / "chain"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 50))

import harness  # noqa: E402
import rclpy  # noqa: E402
from eth_account import Account  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from web3 import Web3  # noqa: E402

from peaqos_harness import NodeProcess  # noqa: E402
from test_chain_services_e2e import Caller, activate_gen2  # noqa: E402
from test_market_e2e import Orchestrator, market_params  # noqa: E402

USDT = "0xf4d9235269a96aadafc9adae454a0618ebe37949"
POLICY = """schema_version: 1
topics:
  - topic: /bench_cam
    type: std_msgs/msg/String
    qos: reliable
    stream:
      chunk: {{max_messages: 1}}
      sale:
        price: "0.01"
        currency: USDT
        payment_rails:
          - {{type: transfer, chain: peaq, token: USDT, pay_to: "{pay_to}", token_address: "{usdt}"}}
"""


def control(url: str, name: str, body: dict) -> dict:
    req = urllib.request.Request(f"{url}/__mock__/{name}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:  # noqa: PLR0915 - one scenario, in order
    ap = argparse.ArgumentParser()
    ap.add_argument("--purchases", type=int, default=220)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--sequential", type=int, default=20, help="purchases paid one at a time first (latency)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_market_"))
    with harness.TestChain() as chain:
        desc = chain.describe()
        buyer = Account.from_key(desc["accounts"][3]["private_key"])
        payee = desc["accounts"][5]["address"]
        chain.place_token(USDT, {buyer.address: 10**15})
        orch = Orchestrator(tmp, "--rpc-url", chain.rpc_url).start()
        (tmp / "policy.yaml").write_text(POLICY.format(pay_to=payee, usdt=USDT))
        params = market_params(tmp, orch, **{
            "chain.enabled": "true", "chain.rpc_urls": f"['{chain.rpc_url}']", "chain.receipt_timeout": "60.0",
            "policy_file": str(tmp / "policy.yaml"), "market.purchase_poll_interval": "1.0",
            "market.payment_confirmations": "1", "diagnostics_period": "1.0"})
        params.pop("market.heartbeat.min_interval")  # the default 5 s: the bench measures purchases
        node = NodeProcess(tmp, params).start()
        rclpy.init()
        ros = rclpy.create_node("bench_market")
        try:
            c = Caller(ros, proc=node)
            mid = int(activate_gen2(c).machine_id)
            deadline = time.monotonic() + 60
            while not (orch.state()["listings"] and orch.state()["sockets"]):
                assert time.monotonic() < deadline, node.output()[-3000:]
                time.sleep(0.2)
            listing = orch.state()["listings"][0]
            pub = ros.create_publisher(String, "/bench_cam", 100)
            cam = Path(params["data_dir"]) / "stream" / "bench_cam"
            n = 0
            while len(list(cam.glob("*.bin"))) < a.chunks:
                pub.publish(String(data=f"frame {n}"))
                n += 1
                rclpy.spin_once(ros, timeout_sec=0.05)
            ids = [json.loads((cam / f"{i}.json").read_text())["chunkId"] for i in range(a.chunks)]
            buyer_pk = "11" * 32
            purchases = [control(orch.url, "purchases", {
                "machineId": listing["machineId"], "listingId": listing["id"], "buyerPublicKeyHex": buyer_pk,
                "selection": {"chunkIds": [ids[i % a.chunks]]}})["item"]["id"] for i in range(a.purchases)]
            quoted = lambda: sum(1 for p in orch.state()["purchases"] if p.get("quote"))  # noqa: E731
            while quoted() < a.purchases:
                time.sleep(0.2)
            # the buyer pays each quote (0.01 USDT = 10,000 base units) with its own transfer
            token = chain.contract("PeaqToken", USDT)
            w3, nonce, txs = chain.w3, chain.w3.eth.get_transaction_count(buyer.address), []
            for i, _ in enumerate(purchases):
                tx = token.functions.transfer(Web3.to_checksum_address(payee), 10_000).build_transaction(
                    {"from": buyer.address, "nonce": nonce + i, "gas": 100_000, "chainId": w3.eth.chain_id})
                txs.append(w3.eth.send_raw_transaction(buyer.sign_transaction(tx).raw_transaction).to_0x_hex())
            w3.eth.wait_for_transaction_receipt(txs[-1], timeout=60)

            def settled(ids: list[str], since: float, poll: float = 0.02) -> list[dict]:
                while True:
                    st = [p for p in orch.state()["purchases"] if p["id"] in set(ids)]
                    done = [p for p in st if p["timing"]["completed"]]
                    if len(done) == len(ids):
                        return done
                    assert time.time() - since < 600, f"{len(done)} of {len(ids)} settled in 600 s"
                    time.sleep(poll)

            # 1. latency: one paid purchase at a time (what a buyer waits on an idle seller)
            one = []
            for pid, tx in list(zip(purchases, txs))[:a.sequential]:
                control(orch.url, f"purchases/{pid}/pay", {"reference": tx})
                [p] = settled([pid], time.time())
                one.append(p["timing"]["prepared"] - p["timing"]["paid"])
            # 2. throughput: all the others paid at once
            burst = list(zip(purchases, txs))[a.sequential:]
            t0 = time.time()
            for pid, tx in burst:
                control(orch.url, f"purchases/{pid}/pay", {"reference": tx})
            done = settled([pid for pid, _ in burst], t0, poll=0.5)  # light polling: the server is shared
            t_last = max(p["timing"]["completed"] for p in done)
            lat = [p["timing"]["prepared"] - p["timing"]["paid"] for p in done]
            recs = [json.loads((Path(params["data_dir"]) / "market" / "purchases" / f"{pid}.json").read_text())
                    for pid in purchases]
            while sum(1 for r in recs if r["state"] == "recorded") < len(purchases):
                time.sleep(0.2)
                recs = [json.loads((Path(params["data_dir"]) / "market" / "purchases" / f"{pid}.json").read_text())
                        for pid in purchases]
            reg = chain.contract("EventRegistryV2", chain.gen2["event_registry"])
            while reg.functions.getEventCount(mid).call() < len(purchases):
                assert time.time() - t0 < 900, "revenue events not all included"
                time.sleep(0.5)
            t_chain = time.time()
            hwm = next(int(line.split()[1]) for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines()
                       if line.startswith("VmHWM"))
            wall = t_last - t0
            ms = lambda xs: {"p50": round(statistics.median(xs) * 1000, 1),  # noqa: E731
                             "p99": round(pct(xs, 0.99) * 1000, 1), "max": round(max(xs) * 1000, 1)}
            print(json.dumps({
                "purchases": len(purchases),
                "one_at_a_time": {"purchases": len(one), "verified_to_access_prepared_ms": ms(one)},
                "burst": {"purchases": len(burst), "settled_per_minute": round(len(burst) / wall * 60, 1),
                          "wall_s": round(wall, 2), "verified_to_access_prepared_ms": ms(lat)},
                "revenue_events_on_chain": reg.functions.getEventCount(mid).call(),
                "all_events_included_after_s": round(t_chain - t0, 2),
                "on_chain_checked": sum(1 for r in recs if r.get("paymentCheck", "").startswith("chain:")),
                "node_peak_rss_mib": round(hwm / 1024, 1)}, indent=1))
        finally:
            assert node.stop() == 0, node.output()[-3000:]
            orch.stop()
            ros.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
