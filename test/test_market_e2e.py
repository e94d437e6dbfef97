"""Machine Markets on the node, in a real ROS 2 graph against the local orchestrator
(test/market/orchestrator.py, kept honest by the real SDK in test/market/test_orchestrator_sdk.py):
`~/market_onboard` (idempotent), onboarding at start once the machine id is known, the heartbeat,
the "peaqos_node: market" /diagnostics status through a server outage (kill -9 and restart), and
no secret in the log or the data dir."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray

from peaqos_harness import (DEMO_ADDRESS, DEMO_DID, DEMO_KEY, ROOT, NodeProcess, call_service,
                            run_node_expecting_failure, scaled, wait_until)

from peaqos_node.srv import MarketOnboard

API_KEY = "e2e-platform-key-5f1c9a"
SERVER = ROOT / "test" / "market" / "orchestrator.py"


class Orchestrator:
    """orchestrator.py as a child process; restartable on the same port with the same records."""

    def __init__(self, tmp: Path, *args: str):
        self.tmp, self.args, self.port = Path(tmp), list(args), 0
        self.state_file = self.tmp / "orchestrator-state.json"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Orchestrator":
        py = os.environ.get("PEAQOS_SDK_PYTHON") or sys.executable
        argv = [py, str(SERVER), "--port", str(self.port), "--api-key", API_KEY, "--controller", f"*={DEMO_ADDRESS}",
                "--state-file", str(self.state_file), *self.args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line, f"orchestrator.py did not start ({argv})"
        self.url = json.loads(line)["url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "/__mock__/state", timeout=10) as r:
            return json.load(r)

    def live(self, kind: str) -> list[dict]:
        bad = "archived" if kind == "machines" else "revoked"
        return [x for x in self.state()[kind] if x["status"] != bad]

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.state()["requests"] if r["method"] == method and r["path"] == path)


@pytest.fixture
def orch(tmp_path):
    o = Orchestrator(tmp_path, "--lease-ttl", "2").start()
    yield o
    o.stop()


def api_key_file(tmp: Path) -> Path:
    f = tmp / "platform.key"
    f.write_text(API_KEY + "\n")
    f.chmod(0o600)
    return f


def market_params(tmp: Path, orch: Orchestrator, **extra: str) -> dict[str, str]:
    p = {
        "data_dir": str(tmp / "data"),
        "chain.enabled": "false",
        "diagnostics_period": "0.2",
        "market.enabled": "true",
        "market.url": orch.url,
        "market.api_key_file": str(api_key_file(tmp)),
        "market.display_name": "E2E robot",
        "market.owner_id": "owner-e2e",
        "market.capabilities": "['camera','lidar']",
        "market.labels": "['site=lab','zone=a']",
        "market.heartbeat.min_interval": "0.2",
        "market.heartbeat.backoff_base": "0.2",
        "market.heartbeat.backoff_max": "1.0",
    }
    p.update(extra)
    return p


class Diagnostics:
    def __init__(self, ros_node):
        self.ros_node, self.last = ros_node, None
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)

    def _on(self, msg) -> None:
        for st in msg.status:
            if st.name == "peaqos_node: market":
                self.last = st

    def wait(self, what: str, pred, node: NodeProcess, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(self.ros_node, timeout_sec=0.05)
            if self.last is not None:
                st = self.last
                level = st.level[0] if isinstance(st.level, bytes) else st.level
                values = {kv.key: kv.value for kv in st.values}
                if pred(level, values, st.message):
                    return level, values, st.message
        raise AssertionError(f"market diagnostics never showed {what} in {timeout}s; last: {self.last}\n"
                             f"node log tail:\n{node.output()[-6000:]}")


OK, WARN, ERROR = 0, 1, 2


def onboard(ros_node, node: NodeProcess):
    cli = ros_node.create_client(MarketOnboard, "/peaqos_node/market_onboard")
    return call_service(ros_node, cli, MarketOnboard.Request(), timeout=60, proc=node)


def assert_no_secrets(node: NodeProcess, data_dir: Path, secrets: list[str]) -> None:
    log = node.output()
    for s in secrets:
        assert s not in log, "a secret reached the node log"
    homes = {data_dir / "market" / "agent_token", data_dir / "market" / "pairing_token"}  # each secret's 0600 file
    for f in data_dir.rglob("*"):
        if f.is_file() and f not in homes:
            data = f.read_bytes()
            for s in secrets:
                assert s.encode() not in data, f"a secret is in {f}"


def test_onboard_service_heartbeat_diagnostics_outage_and_restart(tmp_path, orch, ros_node):
    diags = Diagnostics(ros_node)
    params = market_params(tmp_path, orch, **{"chain.machine_id": "4242", "market.onboard_at_start": "false"})
    data_dir = Path(params["data_dir"])
    node = NodeProcess(tmp_path, params).start()
    try:
        # not asked to onboard: idle, nothing sent
        diags.wait("idle", lambda lvl, v, m: v["phase"] == "idle" and lvl == OK, node)
        assert orch.state()["challenges"] == 0

        r = onboard(ros_node, node)
        assert r.success, (r.error_code, r.message)
        assert (r.machine_id, r.identity_ref, r.machine_status) == ("4242", "did:peaq:4242", "active")
        assert r.market_machine_id.startswith("mach_") and r.agent_id.startswith("agt_")
        [m] = orch.live("machines")
        assert (m["id"], m["identityRef"], m["status"]) == (r.market_machine_id, "did:peaq:4242", "active")
        assert (m["displayName"], m["ownerId"], m["machineType"], m["runtimeProfile"]) == (
            "E2E robot", "owner-e2e", "robot", "ros2")
        assert m["capabilities"] == ["camera", "lidar"] and m["labels"] == {"site": "lab", "zone": "a"}
        assert m["identityProof"]["signerAddress"] == DEMO_ADDRESS
        [a] = orch.live("agents")
        assert a["id"] == r.agent_id and a["label"] == "peaqos-node"

        # idempotent: the same ids, nothing created
        again = onboard(ros_node, node)
        assert again.success and (again.market_machine_id, again.agent_id) == (r.market_machine_id, r.agent_id)
        assert orch.count("POST", "/api/v1/machines") == 1
        assert orch.count("POST", f"/api/v1/machines/{r.market_machine_id}/agents/enrollment") == 1
        assert len(orch.live("machines")) == 1 and len(orch.live("agents")) == 1

        # heartbeats (lease 2 s: one a second), and the diagnostics say so
        _, v, _ = diags.wait("online with 3 heartbeats",
                             lambda lvl, v, m: lvl == OK and v["phase"] == "online" and int(v["heartbeats"]) >= 3, node)
        assert (v["machine_id"], v["agent_id"], v["chain_machine_id"]) == (r.market_machine_id, r.agent_id, "4242")
        assert v["last_heartbeat"] and v["lease_expires_at"] > v["last_heartbeat"]
        assert orch.live("agents")[0]["heartbeats"] >= 3
        hb = [x for x in orch.state()["requests"] if x["path"] == "/api/v1/machine-agents/heartbeat"]
        assert all("x-api-key" not in x["headers"] for x in hb)
        assert all(x["headers"].get("x-api-key") == API_KEY for x in orch.state()["requests"]
                   if x["path"].startswith("/api/v1/machines"))

        # the server dies: WARN with backoff, growing failures; then it comes back: OK again
        orch.kill9()
        _, v, msg = diags.wait("WARN with backoff",
                               lambda lvl, v, m: lvl == WARN and int(v["failures"]) >= 2 and v["backoff_seconds"], node)
        assert v["phase"] == "retrying" and v["error_code"] == "NETWORK_ERROR" and v["next_attempt"], (v, msg)
        assert float(v["backoff_seconds"]) <= 1.0
        orch.start()
        beats = orch.live("agents")[0]["heartbeats"]
        diags.wait("recovery", lambda lvl, v, m: lvl == OK and v["phase"] == "online" and v["failures"] == "0"
                   and v["error_code"] == "", node)
        deadline = time.monotonic() + 10
        while orch.live("agents")[0]["heartbeats"] <= beats and time.monotonic() < deadline:
            time.sleep(0.1)
        assert orch.live("agents")[0]["heartbeats"] > beats
    finally:
        assert node.stop() == 0, node.output()[-4000:]

    # a restart with onboard_at_start resumes the stored record and agent: nothing new is made
    token = (data_dir / "market" / "agent_token").read_text().strip()
    assert stat.S_IMODE((data_dir / "market" / "agent_token").stat().st_mode) == 0o600
    node2 = NodeProcess(tmp_path, {**params, "market.onboard_at_start": "true"}, name="node2").start()
    try:
        before = orch.live("agents")[0]["heartbeats"]
        diags.last = None
        _, v, _ = diags.wait("online after restart", lambda lvl, v, m: lvl == OK and v["phase"] == "online", node2)
        assert (v["machine_id"], v["agent_id"]) == (r.market_machine_id, r.agent_id)
        assert orch.live("agents")[0]["heartbeats"] > before
        assert len(orch.live("machines")) == 1 and len(orch.live("agents")) == 1
    finally:
        assert node2.stop() == 0, node2.output()[-4000:]
    for n in (node, node2):
        assert_no_secrets(n, data_dir, [API_KEY, token, DEMO_KEY[2:]])


def test_onboards_at_start_once_the_machine_id_is_known(tmp_path, orch, ros_node):
    diags = Diagnostics(ros_node)
    params = market_params(tmp_path, orch)  # no chain.machine_id: waits for ~/activate's file
    data_dir = Path(params["data_dir"])
    node = NodeProcess(tmp_path, params).start()
    try:
        diags.wait("waiting for the machine id",
                   lambda lvl, v, m: lvl == WARN and v["phase"] == "waiting for machine id", node)
        r = onboard(ros_node, node)
        assert not r.success and r.error_code == "MACHINE_ID_UNKNOWN" and r.market_machine_id == "", r
        assert orch.state()["challenges"] == 0
        # what ~/activate does once the machine is on chain
        (data_dir / "machine_id").write_text("77\n")
        _, v, _ = diags.wait("online", lambda lvl, v, m: lvl == OK and v["phase"] == "online", node)
        assert v["chain_machine_id"] == "77"
        [m] = orch.live("machines")
        assert (m["identityRef"], m["status"], m["id"]) == ("did:peaq:77", "active", v["machine_id"])
        assert m["displayName"] == "E2E robot"
    finally:
        assert node.stop() == 0, node.output()[-4000:]
    assert_no_secrets(node, data_dir, [API_KEY, (data_dir / "market" / "agent_token").read_text().strip()])


def test_a_refusal_is_an_error_status_and_a_named_answer(tmp_path, ros_node):
    orch = Orchestrator(tmp_path).start()
    try:
        diags = Diagnostics(ros_node)
        # the platform key is wrong: AUTH_INVALID, not retried
        bad = tmp_path / "wrong.key"
        bad.write_text("not-the-key")
        bad.chmod(0o600)
        params = market_params(tmp_path, orch, **{"chain.machine_id": "5", "market.api_key_file": str(bad)})
        node = NodeProcess(tmp_path, params).start()
        try:
            _, v, msg = diags.wait("ERROR", lambda lvl, v, m: lvl == ERROR, node)
            assert v["phase"] == "failed" and v["error_code"] == "AUTH_INVALID" and "~/market_onboard" in msg
            r = onboard(ros_node, node)
            assert not r.success and r.error_code == "AUTH_INVALID" and "x-api-key" in r.message
        finally:
            assert node.stop() == 0
        assert "not-the-key" not in node.output()
    finally:
        orch.stop()


@pytest.mark.parametrize("extra,env,expect", [
    ({"market.url": '""'}, {}, "market.url"),
    ({"market.url": "ftp://x"}, {}, "market.url"),
    ({"market.labels": "['nolabel']"}, {}, "market.labels[0]"),
    ({"market.heartbeat.network_scope": "galaxy"}, {}, "market.heartbeat.network_scope"),
    ({"market.heartbeat.min_interval": "-1.0"}, {}, "market.heartbeat.min_interval"),
    ({"market.api_key_file": "LOOSE"}, {}, "market.api_key_file"),
    ({"market.purchase_retention": "-5.0"}, {}, "market.purchase_retention"),
    ({"market.delivery.http_listen": "robot:80"}, {}, "market.delivery.http_listen"),
    ({"market.delivery.http_listen": "127.0.0.1:9", "market.delivery.http_url": "ftp://x"}, {},
     "market.delivery.http_url"),
])
def test_bad_market_parameters_stop_the_node_naming_them(tmp_path, extra, env, expect):
    class _O:
        url = "http://127.0.0.1:9"
    params = market_params(tmp_path, _O(), **{"chain.machine_id": "5"})
    if extra.get("market.api_key_file") == "LOOSE":
        f = tmp_path / "loose.key"
        f.write_text("k")
        f.chmod(0o644)
        extra = {"market.api_key_file": str(f)}
    params.update(extra)
    env = {**env, "PEAQOS_ORCHESTRATION_URL": ""}
    code, out = run_node_expecting_failure(tmp_path, params, env)
    assert code != 0 and expect in out, out[-3000:]
    assert "peaqos_node cannot start" in out


SALE_POLICY = """schema_version: 1
topics:
  - topic: /market_cam
    type: std_msgs/msg/String
    stream:
      sale:
        price: {price}
        currency: USDC
        payment_rails:
          - {{type: transfer, chain: "eip155:3338", token: USDC, pay_to: "{pay_to}"}}
          - {{type: x402, chain: base, token: USDC, facilitator_url: "https://facilitator.example"}}
  - topic: /market_log
    type: std_msgs/msg/String
    stream: {{}}
"""


def test_a_topic_for_sale_is_listed_with_its_delivery_capabilities(tmp_path, orch, ros_node):
    policy = tmp_path / "policy.yaml"
    policy.write_text(SALE_POLICY.format(price="0.25", pay_to=DEMO_ADDRESS))
    diags = Diagnostics(ros_node)
    params = market_params(tmp_path, orch, **{"chain.machine_id": "4243", "policy_file": str(policy)})
    node = NodeProcess(tmp_path, params).start()
    try:
        _, v, _ = diags.wait("listing published", lambda lvl, v, m: lvl == OK and v["phase"] == "online"
                             and v["listings"] == "1" and v["listings_published"] == "1", node)
        assert v["capabilities_expires_at"] > v["last_heartbeat"] and v["offers_error"] == ""
        state = orch.state()
        [listing] = state["listings"]
        assert listing["machineId"] == v["machine_id"] and listing["id"].startswith("lst_")
        assert listing["price"] == {"amount": "0.25", "currency": "USDC"}
        assert listing["resource"] == {"type": "stream.topic", "mode": "storage", "supportsLive": True}
        assert listing["paymentRails"] == [
            {"type": "transfer", "destination": {"chain": "eip155:3338", "token": "USDC", "payTo": DEMO_ADDRESS}},
            {"type": "x402", "chain": "base", "token": "USDC", "facilitatorUrl": "https://facilitator.example"}]
        [option] = listing["deliveryOptions"]
        assert option["transportId"] == "peaqos-storage" and option["params"]["topic"] == "/market_cam"
        assert option["params"]["storageProvider"] == "local"
        [caps] = state["deliveryCapabilities"]
        assert (caps["machineId"], caps["agentId"]) == (v["machine_id"], v["agent_id"])
        assert caps["resourceTypes"] == ["stream.listing"]
        assert caps["capabilities"][0]["features"] == ["chunks.v1", "buyer-access.v1", "local"]
        node.wait_for_log(f"market: /market_cam is for sale as listing {listing['id']}")
    finally:
        assert node.stop() == 0, node.output()[-4000:]


@pytest.mark.parametrize("price,pay_to,key", [
    ("-1", DEMO_ADDRESS, "topics[0].stream.sale.price"),
    ("0.5", "", "topics[0].stream.sale.payment_rails[0].pay_to"),
])
def test_a_bad_sale_block_stops_the_node_naming_the_key(tmp_path, price, pay_to, key):
    policy = tmp_path / "policy.yaml"
    policy.write_text(SALE_POLICY.format(price=price, pay_to=pay_to))

    class _O:
        url = "http://127.0.0.1:9"
    params = market_params(tmp_path, _O(), **{"chain.machine_id": "5", "policy_file": str(policy)})
    code, out = run_node_expecting_failure(tmp_path, params)
    assert code != 0 and key in out, out[-3000:]


SELL_POLICY = """schema_version: 1
topics:
  - topic: /market_cam
    type: std_msgs/msg/String
    qos: reliable
    stream:
      chunk: {max_messages: 1}
      sale:
        price: "0.1"
        currency: USDC
        payment_rails:
          - {type: x402, chain: base, token: USDC}
"""


def test_a_paid_purchase_gets_exactly_its_chunks_and_an_unpaid_one_nothing(tmp_path, orch, ros_node):
    """Control socket → purchase seen → quoted → paid → access prepared → delivered → recorded; the buyer
    decrypts exactly the purchased chunk with the real SDK; an unpaid purchase gets nothing; the node
    is killed (-9) with a purchase open and serves it after its restart."""
    sys.path.insert(0, str(ROOT / "test" / "stream"))
    from nacl.public import PrivateKey
    from peaq_os_sdk.stream.chunking import decrypt_chunk
    from sdk_oracle import kr_from_wire, load_dir
    from std_msgs.msg import String

    policy = tmp_path / "policy.yaml"
    policy.write_text(SELL_POLICY)
    diags = Diagnostics(ros_node)
    params = market_params(tmp_path, orch, **{"chain.machine_id": "4244", "policy_file": str(policy),
                                              "market.purchase_poll_interval": "0.5"})
    data_dir = Path(params["data_dir"])
    node = NodeProcess(tmp_path, params).start()
    buyer = PrivateKey.generate()
    buyer_pk = bytes(buyer.public_key).hex()
    try:
        _, v, _ = diags.wait("listed and connected", lambda lvl, v, m: v["listings_published"] == "1"
                             and v["control_connected"] == "true", node)
        [listing] = orch.state()["listings"]
        pub = ros_node.create_publisher(String, "/market_cam", 10)
        cam_dir = data_dir / "stream" / "market_cam"
        deadline = time.monotonic() + 30
        n = 0
        while len(list(cam_dir.glob("*.bin"))) < 3:
            assert time.monotonic() < deadline, f"chunks not sealed; node log:\n{node.output()[-4000:]}"
            pub.publish(String(data=f"frame {n}"))
            n += 1
            rclpy.spin_once(ros_node, timeout_sec=0.1)
        chunks, blobs = load_dir(cam_dir)
        wanted = chunks[1]

        def control(name: str, body: dict) -> dict:
            req = urllib.request.Request(f"{orch.url}/__mock__/{name}", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)

        def purchase(pid: str) -> dict:
            return next(p for p in orch.state()["purchases"] if p["id"] == pid)

        def wait_status(pid: str, status: str, timeout: float = 30) -> dict:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                p = purchase(pid)
                if p["delivery"]["status"] == status:
                    return p
                time.sleep(0.1)
            raise AssertionError(f"purchase {pid} never {status}: {purchase(pid)}\n{node.output()[-4000:]}")

        sel = {"chunkIds": [wanted.chunk_id]}
        unpaid = control("purchases", {"machineId": v["machine_id"], "listingId": listing["id"],
                                       "buyerPublicKeyHex": buyer_pk, "selection": sel})["item"]["id"]
        paid = control("purchases", {"machineId": v["machine_id"], "listingId": listing["id"],
                                     "buyerPublicKeyHex": buyer_pk, "selection": sel})["item"]["id"]
        control(f"purchases/{paid}/pay", {})
        p = wait_status(paid, "completed")
        assert p["prepareCount"] == 1 and [e["type"] for e in p["events"]] == ["seller.ready", "delivery.completed"]
        assert p["quote"] == {"amount": "0.1", "currency": "USDC", "chunkIds": [wanted.chunk_id]}
        [item] = p["access"]
        assert item["chunkId"] == wanted.chunk_id and item["buyer"]["publicKeyHex"] == buyer_pk
        pt = decrypt_chunk(chunk=wanted, recipient_private_key_hex=bytes(buyer).hex(),
                           recipient_entry=kr_from_wire(item["buyer"]), encrypted_data=blobs[wanted.index])
        assert b"frame" in pt
        # the unpaid purchase was seen and quoted, and got nothing
        diags.wait("purchase counts", lambda lvl, v, m: "recorded=1" in v["purchases"]
                   and "quoted=1" in v["purchases"], node)
        rec = json.loads((data_dir / "market" / "purchases" / f"{unpaid}.json").read_text())
        assert rec["state"] == "quoted" and purchase(unpaid)["access"] is None
    finally:
        node.kill9()

    # paid while the node is down (no socket to notify it): served after the restart, from the poll
    control(f"purchases/{unpaid}/pay", {})
    node2 = NodeProcess(tmp_path, params, name="node2").start()
    try:
        p = wait_status(unpaid, "completed")
        assert p["prepareCount"] == 1 and p["access"][0]["chunkId"] == wanted.chunk_id
    finally:
        assert node2.stop() == 0, node2.output()[-4000:]
    token = (data_dir / "market" / "agent_token").read_text().strip()
    for nd in (node, node2):
        assert_no_secrets(nd, data_dir, [API_KEY, token])


@pytest.mark.parametrize("min_free,status", [("0", "active"), (str(2**62), "degraded")])
def test_the_runtime_endpoint_reports_the_nodes_health(tmp_path, orch, ros_node, min_free, status):
    """market.runtime_endpoint.upsert: the heartbeat's endpoint is upserted as the machine's runtime
    endpoint, its status the node's own health (degraded while the disk is below disk.min_free_bytes)."""
    diags = Diagnostics(ros_node)
    params = market_params(tmp_path, orch, **{"chain.machine_id": "4250", "market.runtime_endpoint.upsert": "true",
                                              "market.runtime_endpoint.label": "robot runtime",
                                              "market.heartbeat.endpoint_url": "http://10.0.0.7:8080",
                                              "market.heartbeat.network_scope": "lan", "disk.min_free_bytes": min_free})
    node = NodeProcess(tmp_path, params).start()
    try:
        _, v, _ = diags.wait("runtime endpoint upserted", lambda lvl, v, m: v["runtime_endpoint_status"] == status,
                             node)
        [ep] = orch.state()["runtimeEndpoints"]
        assert (ep["machineId"], ep["providerKey"], ep["status"]) == (v["machine_id"], "qvac", status)
        assert (ep["endpointBaseUrl"], ep["networkScope"], ep["label"], ep["authType"], ep["hasAuthToken"]) == (
            "http://10.0.0.7:8080", "lan", "robot runtime", "none", False)
        assert v["runtime_endpoint_error"] == ""
        upserts = ep["upserts"]
        diags.wait("more heartbeats", lambda lvl, v2, m: int(v2["heartbeats"]) >= int(v["heartbeats"]) + 2, node)
        assert orch.state()["runtimeEndpoints"][0]["upserts"] == upserts, "not again while nothing changed"
        # ~/status says the same as /diagnostics
        from peaqos_node.srv import GetStatus
        st = call_service(ros_node, ros_node.create_client(GetStatus, "/peaqos_node/status"), GetStatus.Request(),
                          proc=node)
        assert (st.market_phase, st.market_machine_id, st.market_agent_id) == ("online", v["machine_id"],
                                                                             v["agent_id"])
        assert st.market_heartbeats >= 2 and st.market_error == ""
    finally:
        assert node.stop() == 0, node.output()[-4000:]


def test_the_orchestrator_down_mid_purchase_delays_the_sale_and_loses_nothing(tmp_path, ros_node):
    """The server dies (kill -9) while the node's prepare-access is in flight and stays down for a
    while; after its restart (same records) the paid purchase is prepared and delivered exactly once."""
    from std_msgs.msg import String
    o = Orchestrator(tmp_path, "--lease-ttl", "2").start()
    policy = tmp_path / "policy.yaml"
    policy.write_text(SELL_POLICY)
    diags = Diagnostics(ros_node)
    params = market_params(tmp_path, o, **{"chain.machine_id": "4251", "policy_file": str(policy),
                                           "market.purchase_poll_interval": "0.5"})
    node = NodeProcess(tmp_path, params).start()
    try:
        _, v, _ = diags.wait("listed and connected", lambda lvl, v, m: v["listings_published"] == "1"
                             and v["control_connected"] == "true", node)
        [listing] = o.state()["listings"]
        pub = ros_node.create_publisher(String, "/market_cam", 10)
        cam_dir = Path(params["data_dir"]) / "stream" / "market_cam"
        deadline = time.monotonic() + 30
        n = 0
        while not (cam_dir / "1.bin").exists():
            assert time.monotonic() < deadline, f"chunks not sealed; node log:\n{node.output()[-4000:]}"
            pub.publish(String(data=f"frame {n}"))
            n += 1
            rclpy.spin_once(ros_node, timeout_sec=0.1)
        chunk = json.loads((cam_dir / "0.json").read_text())["chunkId"]

        def control(name: str, body: dict) -> dict:
            req = urllib.request.Request(f"{o.url}/__mock__/{name}", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)

        pid = control("purchases", {"machineId": v["machine_id"], "listingId": listing["id"],
                                    "buyerPublicKeyHex": "33" * 32, "selection": {"chunkIds": [chunk]}})["item"]["id"]
        wait_until(lambda: any(p["id"] == pid and p.get("quote") for p in o.state()["purchases"]), 30,
                   "the quote", nodes=node)
        # the node's prepare-access will hang on the server; the server dies meanwhile
        control("faults", {"method": "POST", "path": f"/api/v1/stream/orders/{pid}/prepare-access",
                           "delaySeconds": 30, "times": 1})
        control(f"purchases/{pid}/pay", {})
        wait_until(lambda: o.count("POST", f"/api/v1/stream/orders/{pid}/prepare-access") >= 1, 30,
                   "the node's prepare-access", nodes=node)
        o.kill9()
        diags.wait("the failure reported", lambda lvl, v2, m: pid in v2["purchase_error"], node)
        time.sleep(3)
        o.start()
        deadline = time.monotonic() + scaled(60)
        while True:
            p = next(x for x in o.state()["purchases"] if x["id"] == pid)
            if p["delivery"]["status"] == "completed":
                break
            assert time.monotonic() < deadline, f"never completed: {p}\n{node.output()[-4000:]}"
            time.sleep(0.2)
        assert [e["type"] for e in p["events"]] == ["seller.ready", "delivery.completed"], p["events"]
        assert [a["chunkId"] for a in p["access"]] == [chunk] and p["prepareCount"] == 1
        rec_file = Path(params["data_dir"]) / "market" / "purchases" / f"{pid}.json"
        wait_until(lambda: json.loads(rec_file.read_text())["state"] == "recorded", 30, "the purchase recorded",
                   nodes=node)
    finally:
        assert node.stop() == 0, node.output()[-4000:]
        o.stop()
