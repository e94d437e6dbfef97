"""The buyer side end to end, with real parts: a real ROS 2 graph, the node with its chain client on the
local test chain (anvil with a test ERC-20 at peaq's USDT address), the local orchestrator
(test/market/orchestrator.py, which checks every EVM payment proof on that chain) and an rclpy action client
as the robot's planner: it orders a native service through ``~/market_order`` and gets the outcome, orders a
handoff service and gets the handoff, confirms and disputes, is refused over the daily limit before any
transaction, and searches with ``~/market_search``. The payment's calldata and proof body are what the real
peaq-os-sdk 0.12.1 builds for the same order. A ``kill -9`` after the transfer is on chain and before the
proof is accepted leaves one transfer on chain and an order that completes after the restart."""
from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest
from rclpy.action import ActionClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "chain"))

import harness  # noqa: E402
from peaqos_harness import NodeProcess, wait_until  # noqa: E402
from test_chain_services_e2e import Caller, activate_gen2  # noqa: E402
from test_market_e2e import OK, Diagnostics, Orchestrator, assert_no_secrets, market_params  # noqa: E402

from peaqos_node.action import MarketOrder  # noqa: E402
from peaqos_node.srv import MarketOrderDispute, MarketOrderReceived, MarketOrderStatus, MarketSearch  # noqa: E402

# A planner that sends goals in bursts needs deeper queues than a service's default 10 on its side too
# (the node's action keeps 1000): a reply that finds the client's queue full is lost.
DEEP = {f"{k}_qos_profile": QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                      durability=DurabilityPolicy.VOLATILE)
        for k in ("goal_service", "result_service", "cancel_service")}
USDT = "0xf4d9235269a96aadafc9adae454a0618ebe37949"  # peaq USDT in the SDK's token registry (6 decimals)
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


class Market:
    """The orchestrator's market controls (``/__mock__/market/...``)."""

    def __init__(self, orch: Orchestrator):
        self.url = orch.url

    def control(self, method: str, name: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/__mock__/market/{name}", data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def seed(self, **fields) -> None:
        self.control("POST", "services", fields)

    def requests(self, method: str, part: str) -> list[dict]:
        return [r for r in self.control("GET", "requests")["items"]
                if r["method"] == method and part in r["path"]]


class Planner:
    """The robot's planner: an rclpy action client of ``~/market_order``."""

    def __init__(self, ros_node, node: NodeProcess):
        self.ros_node, self.node = ros_node, node
        self.client = ActionClient(ros_node, MarketOrder, "/peaqos_node/market_order", **DEEP)

    def order(self, timeout: float = 90.0, **goal):
        assert self.client.wait_for_server(timeout_sec=20), "~/market_order not available"
        g = MarketOrder.Goal()
        for k, v in goal.items():
            setattr(g, k, v)
        feedback: list = []
        fut = self.client.send_goal_async(g, feedback_callback=lambda f: feedback.append(f.feedback))
        wait_until(fut.done, 30, "the goal to be answered", nodes=self.node, spin=self.ros_node)
        handle = fut.result()
        assert handle.accepted, "goal rejected"
        res = handle.get_result_async()
        wait_until(res.done, timeout, "the order's result", nodes=self.node, spin=self.ros_node)
        return res.result().result, feedback


def usdt_balance(chain, who: str) -> int:
    data = "0x70a08231" + who.lower().removeprefix("0x").rjust(64, "0")
    return int(chain.w3.eth.call({"to": chain.w3.to_checksum_address(USDT), "data": data}).hex() or "0", 16)


def transfers_to(chain, payee: str) -> list[dict]:
    logs = chain.w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": chain.w3.to_checksum_address(USDT),
                                  "topics": [TRANSFER_TOPIC, None, "0x" + payee.lower().removeprefix("0x").rjust(64, "0")]})
    return list(logs)


@pytest.fixture
def buyer_chain():
    with harness.TestChain() as chain:
        yield chain


def start(tmp_path, chain, ros_node, **extra):
    node_addr = chain.describe()["accounts"][0]["address"]  # the demo key is anvil's account 0
    chain.place_token(USDT, {node_addr: 1_000 * 10**6})
    orch = Orchestrator(tmp_path, "--lease-ttl", "5", "--rpc-url", chain.rpc_url).start()
    params = market_params(tmp_path, orch, **{
        "chain.enabled": "true", "chain.rpc_urls": f"['{chain.rpc_url}']", "chain.receipt_timeout": "30.0",
        "market.buyer.enabled": "true", "market.buyer.per_transaction_limit": '"2"',
        "market.buyer.daily_spend_limit": '"3"', "market.buyer.retry_base": "0.2", "market.buyer.retry_max": "1.0",
        **extra})
    node = NodeProcess(tmp_path, params).start()
    c = Caller(ros_node, proc=node)
    activate_gen2(c)
    diags = Diagnostics(ros_node)
    diags.wait("onboarded", lambda lvl, v, m: lvl == OK and v.get("agent_id"), node, timeout=60)
    return orch, params, node, c


def test_a_planner_orders_through_the_action_pays_once_and_confirms(tmp_path, buyer_chain, ros_node):
    chain = buyer_chain
    payee = chain.describe()["accounts"][5]["address"]
    orch, params, node, c = start(tmp_path, chain, ros_node)
    m = Market(orch)
    try:
        m.seed(id="svc_cls", serviceType="inference", operation="classify", price=1.5, currency="USDT",
               tokenAddress=USDT, payeeAddress=payee, chain="peaq", result={"label": "cat"})
        m.seed(id="svc_slot", serviceType="charging", operation="reserve-slot", price=0.5, currency="USDT",
               tokenAddress=USDT, payeeAddress=payee, chain="peaq", executionMode="handoff")
        before = usdt_balance(chain, payee)
        planner = Planner(ros_node, node)

        # a search orders nothing
        s = c.call(MarketSearch, "market_search", service_type="inference", operation="classify")
        assert s.success, s.message
        quotes = json.loads(s.quotes_json)
        assert [q["serviceId"] for q in quotes] == ["svc_cls"] and quotes[0]["amount"] == 1.5

        # a native order: feedback at every step, the outcome in the result, paid exactly once
        r, fb = planner.order(service_type="inference", operation="classify", input_json='{"frame": 1}')
        assert r.success, (r.error_code, r.message)
        assert (r.state, r.amount, r.currency) == ("executed", "1.5", "USDT")
        assert json.loads(r.outcome_json)["result"] == {"label": "cat"}
        steps = [f.step for f in fb]
        for step in ("searched", "quoted", "ordered", "payment_intent", "paid", "proof_accepted", "executing"):
            assert step in steps, steps
        assert usdt_balance(chain, payee) - before == 1_500_000
        tx = chain.w3.eth.get_transaction(r.payment_reference)
        assert tx["from"].lower() == chain.describe()["accounts"][0]["address"].lower()
        [proof] = m.requests("POST", "/payment-proof")
        assert proof["json"]["transactionHash"] == r.payment_reference

        # the payment's calldata and the proof body are what the SDK builds for the same order
        from sdk_market_vectors import sdk_proof_body, sdk_transfer_calldata  # noqa: PLC0415
        assert "0x" + bytes(tx["input"]).hex() == sdk_transfer_calldata(payee, "1.5", 6)
        assert proof["json"] == sdk_proof_body(chain="peaq", token="USDT", token_address=USDT, decimals=6,
                                               payer=tx["from"], payee=payee, amount="1.5",
                                               tx_hash=r.payment_reference)

        # a handoff order returns the handoff
        h, _ = planner.order(service_type="charging", operation="reserve-slot")
        assert h.success and h.state == "handoff", (h.error_code, h.message)
        assert json.loads(h.handoff_json)["url"].startswith("https://")

        # status by order key, confirm and dispute
        st = c.call(MarketOrderStatus, "market_order_status", order_key=r.order_key)
        assert (st.success, st.state, st.order_id, st.payment_reference) == (True, "executed", r.order_id,
                                                                               r.payment_reference)
        ok = c.call(MarketOrderReceived, "market_order_received", order_key=r.order_key)
        assert (ok.success, ok.state, ok.payment_status) == (True, "confirmed", "release_pending"), ok.message
        d = c.call(MarketOrderDispute, "market_order_dispute", order_key=h.order_key, reason="no slot",
                   evidence_json='{"station": "A"}')
        assert (d.success, d.state, d.payment_status) == (True, "disputed", "frozen"), d.message
        bad = c.call(MarketOrderDispute, "market_order_dispute", order_key=h.order_key, reason="")
        assert (bad.success, bad.error_field) == (False, "reason")

        # over the daily limit (2.0 spent, 1.5 more > 3): refused before any transaction
        paid = len(transfers_to(chain, payee))
        intents = len(m.requests("POST", "/payment-intent"))
        over, _ = planner.order(service_type="inference", operation="classify")
        assert (over.success, over.error_code) == (False, "AGENT_DAILY_LIMIT_EXCEEDED"), over.message
        assert len(transfers_to(chain, payee)) == paid and len(m.requests("POST", "/payment-intent")) == intents

        # a burst of goals at once (more than a service's default queue of 10): every one is answered
        m.seed(id="svc_time", serviceType="time", operation="now", price=0, result={"t": 1})
        futs = [planner.client.send_goal_async(MarketOrder.Goal(service_type="time", operation="now",
                                                                client_key=f"burst-{i}")) for i in range(25)]
        wait_until(lambda: all(f.done() for f in futs), 60, "25 goals answered", nodes=node, spin=ros_node)
        results = [f.result().get_result_async() for f in futs]
        wait_until(lambda: all(r.done() for r in results), 90, "25 results", nodes=node, spin=ros_node)
        assert all(r.result().result.success for r in results)
        assert len({r.result().result.order_key for r in results}) == 25

        token_file = Path(params["data_dir"]) / "market" / "pairing_token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert_no_secrets(node, Path(params["data_dir"]), [token_file.read_text()])
    finally:
        node.stop()
        orch.stop()


def test_kill_9_after_the_transfer_and_before_the_proof_pays_once(tmp_path, buyer_chain, ros_node):
    chain = buyer_chain
    payee = chain.describe()["accounts"][6]["address"]
    orch, params, node, c = start(tmp_path, chain, ros_node)
    m = Market(orch)
    try:
        m.seed(id="svc_map", serviceType="maps", operation="tile", price=1, currency="USDT", tokenAddress=USDT,
               payeeAddress=payee, chain="peaq", result={"tile": "z1"})
        # the proof is not accepted for now: the order pays and then waits
        m.control("POST", "faults", {"path": "/api/v1/market/orders/*/payment-proof", "status": 503, "times": 1000})
        planner = Planner(ros_node, node)
        assert planner.client.wait_for_server(timeout_sec=20)
        g = MarketOrder.Goal(service_type="maps", operation="tile", client_key="crash-1")
        fut = planner.client.send_goal_async(g)
        wait_until(fut.done, 30, "the goal to be accepted", nodes=node, spin=ros_node)

        def order_state():
            keys = list((Path(params["data_dir"]) / "market" / "orders").glob("ord-*.json"))
            return json.loads(keys[0].read_text()) if keys else None

        wait_until(lambda: (order_state() or {}).get("state") == "paid", 60, "the order to be paid", nodes=node)
        assert len(transfers_to(chain, payee)) == 1
        node.kill9()

        m.control("DELETE", "faults")
        node = NodeProcess(tmp_path, params, name="node-2").start()
        c = Caller(ros_node, proc=node)
        key = order_state()["key"]

        def ended():
            st = c.call(MarketOrderStatus, "market_order_status", order_key=key)
            return st if st.state in ("executed", "failed") else None

        wait_until(lambda: ended() is not None, 90, "the order to complete after the restart", nodes=node,
                   spin=ros_node)
        st = ended()
        assert st.state == "executed" and st.result_code == "", (st.state, st.result_code, st.message)
        assert len(transfers_to(chain, payee)) == 1, "one transfer on chain"
        assert len([p for p in m.requests("POST", "/payment-proof") if p.get("status") in (200, 201)]) == 1
        # the same client key answers the same order, after the restart too
        r, _ = Planner(ros_node, node).order(service_type="maps", operation="tile", client_key="crash-1")
        assert r.order_key == key and r.success
    finally:
        node.stop()
        orch.stop()
