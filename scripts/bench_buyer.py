#!/usr/bin/env python3
"""How many Machine Markets orders peaqos_node completes per minute as a buyer, end to end (search,
order, payment intent, a real ERC-20 transfer through its outbox, the payment proof the server checks
on chain, execute), compared in the same run with the real peaq-os-sdk 0.12.1 doing the same orders
one after another with its own functions; and the node's memory with 1,000 orders in flight.

    . scripts/env.sh && python3 scripts/bench_buyer.py [--orders 60] [--sdk-orders 20] [--in-flight 1000]

Real parts: the local test chain (anvil, a test USDT at peaq's address), the local orchestrator
(test/market/orchestrator.py --rpc-url), the release node in a ROS 2 graph, an rclpy action client
of ``~/market_order``. "In flight": the orchestrator is switched off (``/__mock__/market/down``),
the orders are placed and wait, the node's RSS is read, the orchestrator comes back and every order
completes.
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
os.environ.setdefault("DO_NOT_TRACK", "1")

import harness  # noqa: E402
import rclpy  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.messages import encode_defunct  # noqa: E402
from rclpy.action import ActionClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from peaqos_harness import NodeProcess  # noqa: E402
from peaqos_node.action import MarketOrder  # noqa: E402
from test_chain_services_e2e import Caller, activate_gen2  # noqa: E402
from test_market_e2e import API_KEY, Orchestrator, market_params  # noqa: E402

# A planner that sends goals in bursts needs deeper queues than a service's default 10 on its side too
# (the node's action keeps 1000): a reply that finds the client's queue full is lost.
DEEP = {f"{k}_qos_profile": QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                      durability=DurabilityPolicy.VOLATILE)
        for k in ("goal_service", "result_service", "cancel_service")}
USDT = "0xf4d9235269a96aadafc9adae454a0618ebe37949"


def control(url: str, name: str, body: dict) -> dict:
    req = urllib.request.Request(f"{url}/__mock__/market/{name}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def rss_kib(pid: int, field: str) -> int:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith(field))


def sdk_orders(orch, chain, machine_id: str, n: int) -> dict:
    """The SDK as the buyer: pair once, then n orders one after another with its own functions."""
    from peaq_os_sdk import PeaqosClient
    from peaq_os_sdk.orchestration.agent_pairings import create_agent_pairing, create_agent_pairing_challenge
    from peaq_os_sdk.orchestration.market_orders import (create_market_order, create_payment_intent,
                                                         execute_market_order)
    from peaq_os_sdk.orchestration.market_search import search_market
    from peaq_os_sdk.orchestration.payments import submit_payment_proof
    from peaq_os_sdk.orchestration.types.agent_pairing import (AgentProofInput, CreateAgentPairingChallengeRequest,
                                                               CreateAgentPairingRequest)
    from peaq_os_sdk.orchestration.types.market_order import CreateMarketOrderRequest, ExecuteMarketOrderRequest
    from peaq_os_sdk.orchestration.types.market_search import MarketSearchRequest
    from peaq_os_sdk.orchestration.types.payment import CreatePaymentIntentRequest, SubmitPaymentProofRequest
    from peaq_os_sdk.stream.payment import transfer_token
    from peaq_os_sdk.stream.types.payment import TokenPaymentRequest

    key = chain.describe()["accounts"][3]["private_key"]
    addr = Account.from_key(key).address
    c = PeaqosClient(rpc_url=chain.rpc_url, private_key=key, orchestration_url=orch.url, api_key=API_KEY)
    ch = create_agent_pairing_challenge(c, machine_id, CreateAgentPairingChallengeRequest(
        agent_address=addr, agent_provider="sdk", agent_role="buyer")).item
    sig = Account.sign_message(encode_defunct(text=ch.message), key).signature.hex()
    p = create_agent_pairing(c, machine_id, CreateAgentPairingRequest(
        agent_address=addr, agent_provider="sdk", agent_role="buyer",
        agent_proof=AgentProofInput(challenge_id=ch.challenge_id, signature="0x" + sig.removeprefix("0x")))).item
    tok = p.pairing_token
    t0 = time.time()
    for _ in range(n):
        s = search_market(c, MarketSearchRequest(service_type="inference", operation="classify"), tok).item
        q = s.quotes[0]
        o = create_market_order(c, CreateMarketOrderRequest(machine_id=machine_id, agent_pairing_id=p.id,
                                                            service_id=q.service_id, search_id=s.id, quote_id=q.id,
                                                            operation="classify"), tok).item
        pay = create_payment_intent(c, o.id, CreatePaymentIntentRequest(), tok).item
        paid = transfer_token(c, TokenPaymentRequest(seller_address=pay.rail.payee_address, amount="0.01",
                                                     token_address=USDT, chain="peaq", order_id=o.id,
                                                     token_decimals=6))
        chain.w3.eth.wait_for_transaction_receipt(paid.tx_hash, timeout=30)
        submit_payment_proof(c, o.id, SubmitPaymentProofRequest(
            verification_mode="rpc", chain="peaq", token="USDT", payer_address=addr,
            payee_address=pay.rail.payee_address, amount="0.01", transaction_hash=paid.tx_hash, token_address=USDT,
            token_decimals=6, raw_amount="10000"), tok)
        execute_market_order(c, o.id, ExecuteMarketOrderRequest(), tok)
    wall = time.time() - t0
    return {"orders": n, "orders_per_minute": round(n / wall * 60, 1), "wall_s": round(wall, 2)}


class Planner:
    def __init__(self, ros):
        self.ros = ros
        self.client = ActionClient(ros, MarketOrder, "/peaqos_node/market_order", **DEEP)
        assert self.client.wait_for_server(timeout_sec=30), "~/market_order not available"

    def burst(self, n: int, tag: str, until_results: bool = True, timeout: float = 900) -> dict:
        """Send n goals at once; with ``until_results``, wait for every result."""
        sent, accepted, results = {}, {}, {}
        t0 = time.time()
        for i in range(n):
            g = MarketOrder.Goal(service_type="inference", operation="classify", client_key=f"{tag}-{i}")
            sent[i] = self.client.send_goal_async(g)
        while len(accepted) < n:
            rclpy.spin_once(self.ros, timeout_sec=0.05)
            for i, f in sent.items():
                if i not in accepted and f.done():
                    accepted[i] = f.result().get_result_async()
            assert time.time() - t0 < timeout, f"{len(accepted)} of {n} goals answered"
        if not until_results:
            return {"accepted": accepted, "t0": t0}
        return self.collect(accepted, t0, timeout)

    def collect(self, accepted: dict, t0: float, timeout: float = 900) -> dict:
        done_at = {}
        while len(done_at) < len(accepted):
            rclpy.spin_once(self.ros, timeout_sec=0.05)
            for i, f in accepted.items():
                if i not in done_at and f.done():
                    done_at[i] = time.time()
            assert time.time() - t0 < timeout, f"{len(done_at)} of {len(accepted)} orders ended"
        ok = sum(1 for f in accepted.values() if f.result().result.success)
        wall = max(done_at.values()) - t0
        lat = [t - t0 for t in done_at.values()]
        return {"orders": len(accepted), "succeeded": ok, "orders_per_minute": round(len(accepted) / wall * 60, 1),
                "wall_s": round(wall, 2), "latency_p50_s": round(statistics.median(lat), 2)}


def main() -> int:  # noqa: PLR0915 - one scenario, in order
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=60, help="orders of the node's burst")
    ap.add_argument("--sdk-orders", type=int, default=20, help="orders the SDK makes one after another")
    ap.add_argument("--in-flight", type=int, default=1000, help="orders waiting at once for the memory figure")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_buyer_"))
    with harness.TestChain() as chain:
        desc = chain.describe()
        # the node's (demo) key is account 0; the SDK buyer is account 3
        chain.place_token(USDT, {desc["accounts"][0]["address"]: 10**15, desc["accounts"][3]["address"]: 10**15})
        payee = desc["accounts"][5]["address"]
        orch = Orchestrator(tmp, "--rpc-url", chain.rpc_url).start()
        params = market_params(tmp, orch, **{
            "chain.enabled": "true", "chain.rpc_urls": f"['{chain.rpc_url}']", "chain.receipt_timeout": "60.0",
            "market.buyer.enabled": "true", "market.buyer.max_open_orders": str(a.in_flight + 100),
            "market.buyer.retry_base": "0.5", "market.buyer.retry_max": "2.0", "diagnostics_period": "1.0"})
        params.pop("market.heartbeat.min_interval")
        node = NodeProcess(tmp, params, log_level="info").start()
        rclpy.init()
        ros = rclpy.create_node("bench_buyer")
        try:
            c = Caller(ros, proc=node)
            activate_gen2(c)
            deadline = time.monotonic() + 60
            while not [m for m in orch.state()["machines"] if m.get("status") == "active"]:
                assert time.monotonic() < deadline, node.output()[-3000:]
                time.sleep(0.2)
            machine_id = [m for m in orch.state()["machines"] if m.get("status") == "active"][0]["id"]
            control(orch.url, "services", {"id": "svc_cls", "serviceType": "inference", "operation": "classify",
                                           "price": "0.01", "currency": "USDT", "tokenAddress": USDT,
                                           "payeeAddress": payee, "chain": "peaq", "result": {"label": "cat"}})
            planner = Planner(ros)
            warm = planner.burst(2, "warm")
            assert warm["succeeded"] == 2, (warm, node.output()[-3000:])
            sdk = sdk_orders(orch, chain, machine_id, a.sdk_orders)
            burst = planner.burst(a.orders, "burst")
            rss_before = rss_kib(node.proc.pid, "VmRSS")
            control(orch.url, "down", {"down": True})
            placed = planner.burst(a.in_flight, "inflight", until_results=False)
            orders_dir = Path(params["data_dir"]) / "market" / "orders"
            time.sleep(2.0)
            rss_waiting = rss_kib(node.proc.pid, "VmRSS")
            open_files = len(list(orders_dir.glob("ord-*.json")))
            control(orch.url, "down", {"down": False})
            t_up = time.time()
            drained = planner.collect(placed["accepted"], placed["t0"])
            drained["after_orchestrator_back_s"] = round(time.time() - t_up, 2)
            print(json.dumps({
                "sdk_one_after_another": sdk,
                "node_burst": burst,
                "in_flight": {"orders": a.in_flight, "order_records_on_disk": open_files,
                              "node_rss_mib_before": round(rss_before / 1024, 1),
                              "node_rss_mib_with_orders_waiting": round(rss_waiting / 1024, 1),
                              "then": drained},
                "node_peak_rss_mib": round(rss_kib(node.proc.pid, "VmHWM") / 1024, 1)}, indent=1))
        finally:
            assert node.stop() == 0, node.output()[-3000:]
            orch.stop()
            ros.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
