"""~/query_mcr, ~/query_machine, ~/query_operator_machines against a local HTTP server that
speaks the MCR API's documented shapes (the hosted API cannot be reached from here)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from peaqos_harness import NodeProcess, call_service

import rclpy
from peaqos_node.srv import QueryMachine, QueryMcr, QueryOperatorMachines  # noqa: E402

OP = "did:peaq:0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ROUTES = {
    "/mcr/did:peaq:42": (200, {"did": "did:peaq:42", "machine_id": 42, "mcr_score": 87, "mcr": "AA",
                               "bond_status": "bonded", "negative_flag": False, "event_count": 5,
                               "revenue_event_count": 3, "activity_event_count": 2, "revenue_trend": "up",
                               "total_revenue": 12345, "average_revenue_per_event": 4115,
                               "last_updated": 1735000000, "mcr_degraded": False}),
    "/mcr/did:peaq:43": (200, {"did": "did:peaq:99", "machine_id": 99}),   # does not correlate
    "/mcr/did:peaq:44": (503, {"detail": "maintenance"}),
    "/machine/did:peaq:42": (200, {"schema_version": "1.0", "name": "robot",
                                   "peaqos": {"machine_id": 42, "did": "did:peaq:42", "operator": OP, "mcr": "AA",
                                              "mcr_score": 87, "bond_status": "bonded", "negative_flag": False,
                                              "event_count": 5, "data_visibility": "public",
                                              "documentation_url": "https://d"}}),
    f"/operator/{OP}/machines": (200, {"operator_did": OP, "machines": [
        {"did": "did:peaq:42", "machine_id": 42, "mcr_score": 87, "mcr": "AA", "negative_flag": False}],
        "pagination": {"offset": 0, "limit": 20, "total": 1}}),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        status, body = ROUTES.get(self.path.split("?")[0], (404, {"detail": "no such DID"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def mcr_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def call(node, srv, name, proc=None, **fields):
    cli = node.create_client(srv, f"/agent_mcr/{name}")
    req = srv.Request()
    for k, v in fields.items():
        setattr(req, k, v)
    return call_service(node, cli, req, timeout=30, proc=proc)


def test_mcr_queries_and_their_error_codes(tmp_path, mcr_server, ros_node):
    policy = tmp_path / "map.yaml"
    policy.write_text("schema_version: 1\ntopics:\n  - topic: /t/unused\n    type: std_msgs/msg/String\n")
    node = NodeProcess(tmp_path, {"policy_file": str(policy), "data_dir": str(tmp_path / "d"),
                                  "chain.mcr_api_url": mcr_server}, node_name="agent_mcr").start()
    try:
        node.wait_for_log("subscribed to /t/unused")
        r = call(ros_node, QueryMcr, "query_mcr", proc=node, did="did:peaq:42")
        assert r.success, (r.error_code, r.message)
        got = json.loads(r.result_json)
        assert got["mcr"] == "AA" and got["mcr_score"] == 87 and got["machine_id"] == 42
        r = call(ros_node, QueryMachine, "query_machine", proc=node, did="did:peaq:42")
        assert r.success and json.loads(r.result_json)["peaqos"]["operator"] == OP
        r = call(ros_node, QueryOperatorMachines, "query_operator_machines", proc=node, did=OP)
        assert r.success and json.loads(r.result_json)["machines"][0]["machine_id"] == 42
        r = call(ros_node, QueryMcr, "query_mcr", proc=node, did="did:peaq:43")
        assert not r.success and r.error_code == "BAD_RESPONSE", (r.error_code, r.message)
        r = call(ros_node, QueryMcr, "query_mcr", proc=node, did="did:peaq:44")
        assert not r.success and r.error_code == "SERVICE_UNAVAILABLE", (r.error_code, r.message)
        r = call(ros_node, QueryMcr, "query_mcr", proc=node, did="did:peaq:77")
        assert not r.success and r.error_code == "NOT_FOUND", (r.error_code, r.message)
        r = call(ros_node, QueryMcr, "query_mcr", proc=node, did="did:peaq:0xabc")
        assert not r.success and r.error_field == "did", (r.error_code, r.error_field, r.message)
    finally:
        node.stop()
