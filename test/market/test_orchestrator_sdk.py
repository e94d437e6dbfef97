"""Keeps test/market/orchestrator.py honest: the real peaq-os-sdk 0.12.1 orchestration client must accept
every shape it serves, and surface its errors with the documented codes.

Each test starts the server in this process (one thread) on a free 127.0.0.1 port; one test also runs it
as a program the way the Rust tests do (``orchestrator.py --port N`` printing one JSON line).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import http.client
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")  # the SDK client starts telemetry otherwise
os.environ.setdefault("PEAQOS_TELEMETRY", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import orchestrator as mock  # noqa: E402

from eth_account import Account  # noqa: E402  (installed with the SDK)
from eth_account.messages import encode_defunct  # noqa: E402
from peaq_os_sdk import PeaqosClient  # noqa: E402
from peaq_os_sdk.orchestration import (  # noqa: E402
    archive_machine,
    check_health,
    create_machine,
    create_machine_identity_challenge,
    enroll_machine_agent,
    get_machine,
    get_readiness,
    list_machine_agents,
    list_machines,
    list_machines_all,
    machine_agent_heartbeat,
    revoke_machine_agent,
    update_machine,
)
from peaq_os_sdk.orchestration.control_socket import OrchestratorSocketError, connect_control_socket  # noqa: E402
from peaq_os_sdk.orchestration.errors import OrchestrationApiError  # noqa: E402
from peaq_os_sdk.orchestration.stream_delivery_setup import (  # noqa: E402
    list_delivery_transports,
    list_payment_rails,
    put_delivery_capabilities,
)
from peaq_os_sdk.orchestration.purchases import (  # noqa: E402
    create_purchase_event,
    get_purchase,
    prepare_buyer_access,
)
from peaq_os_sdk.orchestration.stream_listings import update_stream_listing_purchase_fields  # noqa: E402
from peaq_os_sdk.orchestration.types.purchases import (  # noqa: E402
    PeaqosP2pConnect,
    PrepareStreamAccessRequest,
    PrepareStreamDelivery,
    PurchaseEventActor,
)
from peaq_os_sdk.stream.types.buyer_access import BuyerAccessEntry  # noqa: E402
from peaq_os_sdk.stream.types.chunk import KeyRecipient  # noqa: E402
from peaq_os_sdk.orchestration.types.stream_purchase import (  # noqa: E402
    DeliveryCapabilityInput,
    StreamListingDeliveryOptionInput,
    StreamListingPurchaseFields,
    StreamListingResource,
    TransferListingRail,
    TransferListingRailDestination,
    X402ListingRail,
)
from peaq_os_sdk.orchestration.types.machine import (  # noqa: E402
    CreateMachineIdentityChallengeRequest,
    CreateMachineRequest,
    MachineIdentityProofInput,
    UpdateMachineRequest,
)
from peaq_os_sdk.orchestration.types.machine_agent import (  # noqa: E402
    EnrollMachineAgentRequest,
    HeartbeatEndpointEntry,
    MachineAgentHeartbeatRequest,
)

KEY = "0x" + "11" * 32  # address 0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A (ORCHESTRATION.md §4 vector)
OTHER_KEY = "0x" + "22" * 32
CONTROLLER = Account.from_key(KEY).address
API_KEY = "sdk-test-key"


@pytest.fixture
def orch():
    o = mock.Orchestrator(api_key=API_KEY, controllers={"did:peaq:42": [CONTROLLER], "did:peaq:7": [CONTROLLER]})
    server = mock.make_server(o)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    o.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield o
    server.shutdown()
    server.server_close()


def sdk(o, api_key: str | None = API_KEY) -> PeaqosClient:
    # rpc_url and private_key are required by the constructor but never contacted (ORCHESTRATION.md §0).
    return PeaqosClient(rpc_url="http://127.0.0.1:9", private_key=KEY, orchestration_url=o.url, api_key=api_key)


def sign(message: str, key: str = KEY) -> str:
    sig = Account.sign_message(encode_defunct(text=message), private_key=key).signature.hex()
    return sig if sig.startswith("0x") else "0x" + sig


def register(c: PeaqosClient, ref: str = "did:peaq:42", key: str = KEY):
    ch = create_machine_identity_challenge(c, CreateMachineIdentityChallengeRequest(identity_ref=ref)).item
    proof = MachineIdentityProofInput(challenge_id=ch.challenge_id, signature=sign(ch.message, key))
    return create_machine(c, CreateMachineRequest(
        display_name="Robot 42", owner_id="owner-1", machine_type="robot", runtime_profile="ros2",
        identity_ref=ref, identity_proof=proof, capabilities=("camera",), labels={"site_id": "lab"})).item


def api_error(fn, *args, **kwargs) -> OrchestrationApiError:
    with pytest.raises(OrchestrationApiError) as e:
        fn(*args, **kwargs)
    return e.value


def test_health_and_readiness(orch):
    c = sdk(orch)
    assert check_health(c).ok is True
    assert get_readiness(c).status == "ready"
    assert "x-api-key" not in orch.requests[0]["headers"]  # auth-none calls carry no platform key


def test_challenge_register_activate_get_list(orch):
    c = sdk(orch)
    ch = create_machine_identity_challenge(c, CreateMachineIdentityChallengeRequest(identity_ref="peaqos:machine:42")).item
    assert ch.identity_ref == "did:peaq:42" and ch.verification_method == "eip191"
    assert ch.controller_addresses == (CONTROLLER,)
    m = register(c)
    assert m.id.startswith("mach_") and m.status == "draft" and m.identity_ref == "did:peaq:42"
    assert m.identity_proof.signer_address == CONTROLLER and m.identity_proof.resolution_source == "peaqos-mcr"
    # the SDK camel-cases user map keys on the wire and snake-cases them back (§1.3)
    assert orch.machines[m.id]["labels"] == {"siteId": "lab"} and m.labels == {"site_id": "lab"}
    active = update_machine(c, m.id, UpdateMachineRequest(status="active")).item
    assert active.status == "active"
    assert get_machine(c, m.id).item.status == "active"
    assert [x.id for x in list_machines(c).items] == [m.id]
    hdr = orch.requests[-1]["headers"]
    assert hdr["x-api-key"] == API_KEY and hdr["user-agent"].startswith("peaqos-sdk-py/")


def test_activation_with_a_fresh_proof(orch):
    orch.activation_needs_fresh_proof = True  # a server option; the SDK documents both forms
    c = sdk(orch)
    m = register(c)
    assert api_error(update_machine, c, m.id, UpdateMachineRequest(status="active")).code == \
        "MACHINE_IDENTITY_PROOF_REQUIRED"
    ch = create_machine_identity_challenge(c, CreateMachineIdentityChallengeRequest(identity_ref="did:peaq:42")).item
    proof = MachineIdentityProofInput(challenge_id=ch.challenge_id, signature=sign(ch.message))
    active = update_machine(c, m.id, UpdateMachineRequest(status="active", identity_proof=proof)).item
    assert active.status == "active" and active.identity_proof.challenge_id == ch.challenge_id


def test_pagination_and_bad_limit(orch):
    c = sdk(orch)
    ids = {register(c, f"did:peaq:{i}").id for i in (7, 42)}
    page = list_machines(c, limit=1)
    assert len(page.items) == 1 and page.next_cursor
    assert {m.id for m in list_machines_all(c, limit=1)} == ids
    e = api_error(list_machines, c, cursor="garbage")
    assert (e.code, e.status_code) == ("VALIDATION_ERROR", 400)


def test_identity_exists_and_immutable(orch):
    c = sdk(orch)
    m = register(c)
    e = api_error(register, c)
    assert (e.code, e.status_code) == ("MACHINE_IDENTITY_EXISTS", 409)
    assert e.details["machine_id"] == m.id  # details keys are snake_cased by the SDK
    e = api_error(update_machine, c, m.id, UpdateMachineRequest(identity_ref="did:peaq:7"))
    assert e.code == "MACHINE_IDENTITY_IMMUTABLE"


def test_proof_errors(orch):
    c = sdk(orch)
    e = api_error(register, c, key=OTHER_KEY)  # signer is not a controller
    assert (e.code, e.status_code) == ("MACHINE_IDENTITY_PROOF_INVALID", 400)
    ch = create_machine_identity_challenge(c, CreateMachineIdentityChallengeRequest(identity_ref="did:peaq:42")).item
    orch.clock_offset += orch.challenge_ttl + 1
    proof = MachineIdentityProofInput(challenge_id=ch.challenge_id, signature=sign(ch.message))
    req = CreateMachineRequest(display_name="r", owner_id="o", machine_type="robot", runtime_profile="ros2",
                               identity_ref="did:peaq:42", identity_proof=proof)
    assert api_error(create_machine, c, req).code == "MACHINE_IDENTITY_PROOF_EXPIRED"
    e = api_error(create_machine_identity_challenge, c, CreateMachineIdentityChallengeRequest(identity_ref="did:peaq:99"))
    assert (e.code, e.status_code) == ("PEAQOS_IDENTITY_UNAVAILABLE", 503)


def test_platform_auth_errors(orch):
    assert api_error(list_machines, sdk(orch, api_key=None)).code == "AUTH_REQUIRED"
    e = api_error(list_machines, sdk(orch, api_key="wrong"))
    assert (e.code, e.status_code) == ("AUTH_INVALID", 401)
    assert api_error(get_machine, sdk(orch), "mach_nope").code == "NOT_FOUND"


@pytest.mark.parametrize("field", ["provisioningToken", "agentToken", "both"])
def test_enroll_heartbeat_lease_revoke(orch, field):
    orch.token_field = field
    c = sdk(orch)
    m = register(c)
    e = api_error(enroll_machine_agent, c, m.id, EnrollMachineAgentRequest(label="edge"))
    assert (e.code, e.status_code) == ("MACHINE_NOT_ACTIVE", 409)
    update_machine(c, m.id, UpdateMachineRequest(status="active"))
    agent = enroll_machine_agent(c, m.id, EnrollMachineAgentRequest(label="edge", allowed_provider_keys=("qvac",))).item
    assert agent.status == "provisioned" and agent.machine_id == m.id
    # SDK 0.12.1 only knows provisioningToken; peaq's ROS 2 agent reads agentToken (§3.4)
    token = agent.provisioning_token or orch.agent_tokens[agent.id]
    assert (agent.provisioning_token is not None) == (field != "agentToken")
    ep = HeartbeatEndpointEntry(provider_key="qvac", endpoint_base_url="http://127.0.0.1:8080")
    hb = machine_agent_heartbeat(c, MachineAgentHeartbeatRequest(
        machine_id=m.id, agent_id=agent.id, agent_token=token, endpoints=(ep,))).item
    assert hb.lease_ttl_seconds == orch.lease_ttl and hb.endpoints[0].status == "active"
    assert hb.endpoints[0].lease_expires_at > hb.observed_at
    sent = orch.requests[-1]
    assert "x-api-key" not in sent["headers"]  # heartbeat is auth-none: the token is in the body
    assert "provider_key" in json.loads(sent["body"])["endpoints"][0]  # the SDK's snake_case quirk (§1.3)
    [listed] = list_machine_agents(c, m.id).items
    assert listed.status == "active" and listed.last_seen_at and listed.provisioning_token is None
    e = api_error(machine_agent_heartbeat, c, MachineAgentHeartbeatRequest(
        machine_id=m.id, agent_id=agent.id, agent_token="wrong", endpoints=(ep,)))
    assert (e.code, e.status_code) == ("AGENT_AUTH_INVALID", 401)
    revoke_machine_agent(c, m.id, agent.id)
    e = api_error(machine_agent_heartbeat, c, MachineAgentHeartbeatRequest(
        machine_id=m.id, agent_id=agent.id, agent_token=token, endpoints=(ep,)))
    assert e.code == "AGENT_AUTH_INVALID"


def test_archive_then_register_again(orch):
    c = sdk(orch)
    m = register(c)
    assert archive_machine(c, m.id) is None  # 204, empty body
    assert get_machine(c, m.id).item.status == "archived"
    assert register(c).id != m.id


def test_faults_surface_as_sdk_errors(orch):
    c = sdk(orch)
    orch.faults.append({"method": "GET", "path": "/api/v1/machines", "times": 1, "status": 502, "body": "<html>"})
    e = api_error(list_machines, c)
    assert (e.code, e.status_code) == ("BAD_RESPONSE", 502)
    orch.faults.append({"method": "GET", "path": "/api/v1/machines", "times": 1, "status": 200, "json": {"x": 1}})
    assert api_error(list_machines, c).code == "INVALID_RESPONSE_SHAPE"
    orch.faults.append({"method": "GET", "path": "/api/v1/machines", "times": 1, "status": 429,
                        "json": {"error": {"code": "AGENT_DAILY_LIMIT_EXCEEDED", "message": "slow down"}}})
    assert api_error(list_machines, c).code == "AGENT_DAILY_LIMIT_EXCEEDED"


def enrolled(c: PeaqosClient, ref: str = "did:peaq:42"):
    m = register(c, ref)
    update_machine(c, m.id, UpdateMachineRequest(status="active"))
    return m, enroll_machine_agent(c, m.id, EnrollMachineAgentRequest(label="edge")).item


def test_payment_rails_and_delivery_transports_decode(orch):
    c = sdk(orch)
    rails = list_payment_rails(c)
    assert [r.type for r in rails] == ["transfer", "x402"]
    assert rails[0].verification == "destination-chain-finality" and rails[1].requires_proof is True
    transports = list_delivery_transports(c)
    assert [t.mode for t in transports] == ["p2p", "storage", "storage"]
    assert transports[0].transport_id == "peaqos-webrtc" and transports[1].provider == "s3"


def test_put_delivery_capabilities_as_the_node_sends_them(orch):
    c = sdk(orch)
    m, a = enrolled(c)
    caps = [DeliveryCapabilityInput(transport_id="peaqos-storage", version="1",
                                    features=("chunks.v1", "buyer-access.v1", "local"))]
    r = put_delivery_capabilities(c, m.id, agent_id=a.id, capabilities=caps, resource_types=["stream.listing"],
                                  expires_at="2030-01-01T00:00:00.000Z")
    assert (r.machine_id, r.agent_id, r.status, r.resource_types) == (m.id, a.id, "active", ("stream.listing",))
    assert r.capabilities[0].transport_id == "peaqos-storage" and r.expires_at == "2030-01-01T00:00:00.000Z"
    # the wire body the SDK sent is the shape the Rust client sends (camelCase, no nulls)
    body = json.loads(orch.requests[-1]["body"])
    assert body == {"agentId": a.id, "capabilities": [{"transportId": "peaqos-storage", "version": "1",
                                                       "features": ["chunks.v1", "buyer-access.v1", "local"]}],
                    "resourceTypes": ["stream.listing"], "expiresAt": "2030-01-01T00:00:00.000Z"}
    # without resource types / expiry: the server's defaults (SDK docstring)
    r = put_delivery_capabilities(c, m.id, agent_id=a.id, capabilities=caps)
    assert r.resource_types == ("stream.bundle",) and r.expires_at
    revoke_machine_agent(c, m.id, a.id)
    assert api_error(put_delivery_capabilities, c, m.id, agent_id=a.id, capabilities=caps).code == "NOT_FOUND"


def test_listing_purchase_fields_as_the_node_sends_them(orch):
    c = sdk(orch)
    m, _ = enrolled(c)
    fields = StreamListingPurchaseFields(
        resource=StreamListingResource(type="stream.topic", mode="storage", supports_live=True),
        payment_rails=(TransferListingRail(type="transfer", destination=TransferListingRailDestination(
                           chain="eip155:3338", token="USDC", pay_to="0xabc", token_address="0xdef")),
                       X402ListingRail(type="x402", chain="base", token="USDC", facilitator_url="https://f")),
        delivery_options=(StreamListingDeliveryOptionInput(
            transport_id="peaqos-storage", version="1", features=("chunks.v1",),
            params={"topic": "/battery_state", "storage_provider": "local"}),),
    )
    assert update_stream_listing_purchase_fields(c, m.id, "lst_1", fields) is None
    body = json.loads(orch.requests[-1]["body"])
    assert body["resource"] == {"type": "stream.topic", "mode": "storage", "supportsLive": True}
    assert body["paymentRails"] == [
        {"type": "transfer", "destination": {"chain": "eip155:3338", "token": "USDC", "payTo": "0xabc",
                                             "tokenAddress": "0xdef"}},
        {"type": "x402", "chain": "base", "token": "USDC", "facilitatorUrl": "https://f"}]
    # the SDK camel-cases params keys too (§1.3): the node sends its params keys in camelCase itself
    assert body["deliveryOptions"] == [{"transportId": "peaqos-storage", "version": "1", "features": ["chunks.v1"],
                                        "params": {"topic": "/battery_state", "storageProvider": "local"}}]
    [listing] = orch.listings.values()
    assert (listing["id"], listing["machineId"], listing["resource"]["mode"]) == ("lst_1", m.id, "storage")
    # additive: a second PATCH with only rails keeps the resource
    update_stream_listing_purchase_fields(c, m.id, "lst_1", StreamListingPurchaseFields(payment_rails=(
        X402ListingRail(type="x402", chain="base", token="USDC"),)))
    assert orch.listings[f"{m.id}/lst_1"]["resource"]["type"] == "stream.topic"
    assert len(orch.listings[f"{m.id}/lst_1"]["paymentRails"]) == 1
    bad = StreamListingPurchaseFields(payment_rails=(TransferListingRail(
        type="transfer", destination=TransferListingRailDestination(chain="c", token="t", pay_to="")),))
    e = api_error(update_stream_listing_purchase_fields, c, m.id, "lst_1", bad)
    assert e.code == "VALIDATION_ERROR" and "payTo" in str(e)


def test_purchase_prepare_access_and_events_as_the_node_sends_them(orch):
    c = sdk(orch)
    m, a = enrolled(c)
    update_stream_listing_purchase_fields(c, m.id, "lst_1", StreamListingPurchaseFields(
        resource=StreamListingResource(type="stream.topic", mode="storage")))
    orch.listings[f"{m.id}/lst_1"]["price"] = {"amount": "0.25", "currency": "USDC"}
    buyer_pk = "ab" * 32
    p = orch.mock_purchase({"machineId": m.id, "listingId": "lst_1", "buyerPublicKeyHex": buyer_pk,
                            "selection": {"chunkIds": ["0x01"]}})
    got = get_purchase(c, p["id"])
    assert (got.id, got.resource.listing_id, got.resource.selection.chunk_ids) == (p["id"], "lst_1", ("0x01",))
    assert (got.buyer.public_key.public_key_hex, got.payment.status, got.delivery.status) == (
        buyer_pk, "pending", "blocked")
    entry = BuyerAccessEntry(chunk_id="0x01", buyer=KeyRecipient(
        recipient_id="buyer-1", recipient_type="buyer", algorithm="x25519-sealedbox", public_key_hex=buyer_pk,
        wrapped_key_hex="cd" * 80))
    token = orch.agent_tokens[a.id]
    # storage mode: the SDK's types say p2p; Python does not enforce it, so the wire shape is the SDK's
    req = PrepareStreamAccessRequest(machine_id=m.id, agent_id=a.id, agent_token=token, items=(entry,),
                                     delivery=PrepareStreamDelivery(mode="storage", transport_id="peaqos-storage",
                                                                    connect=PeaqosP2pConnect(
                                                                        type="storage-ref", url="peaqos-storage:lst_1",
                                                                        expires_at="2030-01-01T00:00:00.000Z")))
    assert api_error(prepare_buyer_access, c, p["id"], agent_id=a.id, agent_token=token,
                     request=req).code == "PAYMENT_REQUIRED"  # never before payment
    orch.mock_pay(p["id"], {})
    r = prepare_buyer_access(c, p["id"], agent_id=a.id, agent_token=token, request=req)
    assert (r.item.id, r.item.amount, r.item.currency, r.item.chunk_ids) == (p["id"], "0.25", "USDC", ("0x01",))
    assert r.access[0].buyer.wrapped_key_hex == "cd" * 80 and r.delivery_session.order_id == p["id"]
    body = json.loads(orch.requests[-1]["body"])
    assert body["items"] == [{"schemaVersion": "peaq.stream.buyer-access.v1", "chunkId": "0x01",
                              "buyer": {"recipientId": "buyer-1", "recipientType": "buyer",
                                        "algorithm": "x25519-sealedbox", "publicKeyHex": buyer_pk,
                                        "wrappedKeyHex": "cd" * 80}}]
    assert body["delivery"] == {"mode": "storage", "transportId": "peaqos-storage", "connect": {
        "type": "storage-ref", "url": "peaqos-storage:lst_1", "expiresAt": "2030-01-01T00:00:00.000Z"}}
    assert (body["machineId"], body["agentId"], body["agentToken"]) == (m.id, a.id, token)
    assert "x-machine-agent-token" not in orch.requests[-1]["headers"]
    ev = create_purchase_event(c, p["id"], actor=PurchaseEventActor(type="seller", machine_id=m.id, agent_id=a.id),
                               event_type="delivery.completed", payload={"chunk_ids": ["0x01"], "mode": "storage"})
    assert (ev.purchase_id, ev.type) == (p["id"], "delivery.completed")
    assert json.loads(orch.requests[-1]["body"])["actor"] == {"type": "seller", "machineId": m.id, "agentId": a.id}
    assert get_purchase(c, p["id"]).delivery.status == "completed"


class _Handlers:
    def __init__(self):
        self.connected, self.notes, self.acks, self.errors, self.closed = [], [], [], [], threading.Event()

    def on_connected(self, msg):
        self.connected.append(msg)

    def on_notification(self, msg):
        self.notes.append(msg)

    def on_ack(self, msg):
        self.acks.append(msg)

    def on_error(self, err):
        self.errors.append(err)

    def on_close(self):
        self.closed.set()


def _until(pred, what: str, timeout: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_control_socket_greets_notifies_acks_and_refuses_bad_agents(orch):
    c = sdk(orch)
    m, a = enrolled(c)
    update_stream_listing_purchase_fields(c, m.id, "lst_1", StreamListingPurchaseFields(
        resource=StreamListingResource(type="stream.topic", mode="storage")))
    h = _Handlers()
    conn = connect_control_socket(c, m.id, h, agent_id=a.id, agent_token=orch.agent_tokens[a.id])
    try:
        _until(lambda: h.connected, "control.connected")
        assert (h.connected[0].machine_id, h.connected[0].agent_id) == (m.id, a.id)
        req = [r for r in orch.requests if r["path"].endswith("/control-socket")][-1]
        assert req["headers"]["x-machine-agent-id"] == a.id and "x-api-key" not in req["headers"]
        p = orch.mock_purchase({"machineId": m.id, "listingId": "lst_1", "buyerPublicKeyHex": "ab" * 32})
        orch.mock_pay(p["id"], {})
        _until(lambda: len(h.notes) == 2, "two notifications")
        assert [n.type for n in h.notes] == ["purchase.created", "purchase.payment_proof.recorded"]
        assert h.notes[1].payload["purchase_id"] == p["id"] and h.notes[1].payload["payment_status"] == "verified"
        conn.send({"type": "seller.hello"})
        _until(lambda: h.acks, "control.ack")
        assert not h.errors
    finally:
        conn.close()
    with pytest.raises(OrchestratorSocketError):
        connect_control_socket(c, m.id, _Handlers(), agent_id=a.id, agent_token="wrong")


def test_program_prints_one_json_line_and_serves_loopback_only():
    p = subprocess.Popen([sys.executable, str(Path(mock.__file__)), "--port", "0", "--controller", f"42={CONTROLLER}"],
                         stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(p.stdout.readline())
        assert info["url"].startswith("http://127.0.0.1:") and info["apiBase"] == info["url"] + "/api/v1"
        with urllib.request.urlopen(info["apiBase"] + "/health", timeout=5) as r:
            assert json.load(r) == {"ok": True}
    finally:
        p.terminate()
        assert p.wait(timeout=5) == 0


def test_runtime_endpoints_through_the_sdk(orch):
    from peaq_os_sdk.orchestration.runtime_endpoints import (delete_runtime_endpoint, get_runtime_endpoint,
                                                             list_runtime_endpoints, upsert_runtime_endpoint)
    from peaq_os_sdk.orchestration.types.runtime_endpoint import UpsertRuntimeEndpointRequest
    c = sdk(orch)
    m = register(c)
    ep = upsert_runtime_endpoint(c, m.id, "qvac", UpsertRuntimeEndpointRequest(
        endpoint_base_url="http://127.0.0.1:8080", label="robot", network_scope="lan", status="degraded")).item
    assert (ep.provider_key, ep.status, ep.network_scope, ep.has_auth_token) == ("qvac", "degraded", "lan", False)
    assert get_runtime_endpoint(c, m.id, "qvac").item.endpoint_base_url == "http://127.0.0.1:8080"
    assert [e.provider_key for e in list_runtime_endpoints(c, m.id).items] == ["qvac"]
    e = api_error(upsert_runtime_endpoint, c, m.id, "qvac", UpsertRuntimeEndpointRequest(
        endpoint_base_url="http://127.0.0.1:8080", status="sleeping"))
    assert (e.code, e.status_code) == ("VALIDATION_ERROR", 400)
    assert delete_runtime_endpoint(c, m.id, "qvac") is None
    assert api_error(get_runtime_endpoint, c, m.id, "qvac").code == "NOT_FOUND"


def test_the_buyer_side_through_the_sdk(orch):
    """Pairing (challenge → EIP-191 proof → token, a new session replacing the token), a purchase, the
    intent refused until the seller quoted, a recorded proof, the delivery refused until access is prepared."""
    from peaq_os_sdk.orchestration.agent_pairings import (create_agent_pairing, create_agent_pairing_challenge,
                                                          create_agent_pairing_session)
    from peaq_os_sdk.orchestration.types.agent_pairing import (AgentProofInput, CreateAgentPairingChallengeRequest,
                                                               CreateAgentPairingRequest,
                                                               CreateAgentPairingSessionRequest, DelegationPolicy)
    from peaq_os_sdk.orchestration.purchases import (create_purchase, create_purchase_payment_intent,
                                                     get_purchase_delivery, submit_purchase_payment_proof)
    from peaq_os_sdk.orchestration.types.purchases import (BuyerPublicKey, PurchaseBuyerInput, PurchaseResource,
                                                           TransferPaymentIntentRail, TransferRailDestination)
    c = sdk(orch)
    m = register(c)
    buyer = Account.create()
    ask = CreateAgentPairingChallengeRequest(agent_address=buyer.address, agent_provider="p", agent_role="buyer")
    ch = create_agent_pairing_challenge(c, m.id, ask).item
    assert ch.verification_method == "eip191" and ch.agent_address == buyer.address
    bad = api_error(create_agent_pairing, c, m.id, CreateAgentPairingRequest(
        agent_address=buyer.address, agent_provider="p", agent_role="buyer",
        agent_proof=AgentProofInput(challenge_id=ch.challenge_id, signature=sign(ch.message, OTHER_KEY))))
    assert (bad.code, bad.status_code) == ("AGENT_PAIRING_PROOF_INVALID", 400)
    policy = DelegationPolicy(allowed_skill_keys=(), denied_skill_keys=(), allowed_service_ids=(),
                              denied_service_ids=(), per_transaction_limit=5.0, daily_spend_limit=20.0, currency="USDT")
    p = create_agent_pairing(c, m.id, CreateAgentPairingRequest(
        agent_address=buyer.address, agent_provider="p", agent_role="buyer", delegation_policy=policy,
        agent_proof=AgentProofInput(challenge_id=ch.challenge_id, signature=sign(ch.message, buyer.key.hex())))).item
    assert p.pairing_token and p.status == "active" and p.delegation_policy.daily_spend_limit == 20.0
    ch2 = create_agent_pairing_challenge(c, m.id, ask).item
    s = create_agent_pairing_session(c, m.id, p.id, CreateAgentPairingSessionRequest(
        agent_proof=AgentProofInput(challenge_id=ch2.challenge_id, signature=sign(ch2.message, buyer.key.hex())))).item
    assert s.pairing_token != p.pairing_token and s.session_expires_at
    tok = s.pairing_token
    # a policy update (#15) ends the session: the agent opens a new one (#14)
    from peaq_os_sdk.orchestration.agent_pairings import update_agent_pairing
    from peaq_os_sdk.orchestration.types.agent_pairing import UpdateAgentPairingRequest
    from peaq_os_sdk.orchestration.market_search import search_market
    from peaq_os_sdk.orchestration.types.market_search import MarketSearchRequest
    tighter = DelegationPolicy(allowed_skill_keys=(), denied_skill_keys=(), allowed_service_ids=(),
                               denied_service_ids=(), per_transaction_limit=1.0, daily_spend_limit=20.0, currency="USDT")
    u = update_agent_pairing(c, m.id, p.id, UpdateAgentPairingRequest(delegation_policy=tighter)).item
    assert u.delegation_policy.per_transaction_limit == 1.0
    assert api_error(search_market, c, MarketSearchRequest(), tok).code == "AGENT_AUTH_EXPIRED"
    ch3 = create_agent_pairing_challenge(c, m.id, ask).item
    tok = create_agent_pairing_session(c, m.id, p.id, CreateAgentPairingSessionRequest(
        agent_proof=AgentProofInput(challenge_id=ch3.challenge_id, signature=sign(ch3.message, buyer.key.hex())))
    ).item.pairing_token
    assert search_market(c, MarketSearchRequest(), tok).item.status in ("completed", "no_match")
    orch.listings[f"{m.id}/lst_1"] = {"id": "lst_1", "machineId": m.id, "paymentRails": [
        {"type": "transfer", "destination": {"chain": "peaq", "token": "USDT", "payTo": buyer.address}}]}
    resource = PurchaseResource(type="stream.listing", listing_id="lst_1")
    who = PurchaseBuyerInput(id="b", public_key=BuyerPublicKey(type="x25519", public_key_hex="22" * 32))
    assert api_error(create_purchase, c, resource=resource, buyer=who, pairing_token=p.pairing_token).code \
        == "AUTH_INVALID", "the old session's token is replaced"
    pur = create_purchase(c, resource=resource, buyer=who, pairing_token=tok)
    assert pur.status == "pending_payment" and pur.payment.status == "pending"
    rail = TransferPaymentIntentRail(type="transfer", destination=TransferRailDestination(pay_to=buyer.address))
    e = api_error(create_purchase_payment_intent, c, pur.id, rail=rail, pairing_token=tok)
    assert (e.code, e.status_code) == ("PURCHASE_NOT_QUOTED", 409)
    orch.purchase_event(pur.id, {"actor": {"type": "seller"}, "type": "seller.ready",
                                 "payload": {"chunkIds": ["c1", "c2"], "amount": "0.5", "currency": "USDT"}})
    it = create_purchase_payment_intent(c, pur.id, rail=rail, pairing_token=tok)
    assert (it.amount.value, it.amount.token, it.instructions["raw_amount"]) == ("0.5", "USDT", "500000")
    proof = submit_purchase_payment_proof(c, pur.id, rail="transfer", pairing_token=tok,
                                          transaction_hash="0x" + "ab" * 32, verification_mode="recorded")
    assert (proof.payment_status, proof.delivery_status) == ("verified", "releasable")
    e = api_error(get_purchase_delivery, c, pur.id, tok)
    assert e.code == "STREAM_DELIVERY_NOT_READY"


# ---- market orders (market_orders.py), driven by the SDK's own functions -------------------------------------
# Facts the tests rely on, copied from the team's SDK study (peaqos/ORCHESTRATION.md §2.1 #25-41, §3.7-3.12):
# execute answers {order, execution{statusCode 200, run, outcome}} or {…statusCode 202, handoff}; confirm moves a
# held payment to release_pending, dispute to frozen; GET …/payment is {"item": null} before an intent; the SDK
# sends request keys camelCase and hands response keys back snake_case, except the opaque `result`.
from peaq_os_sdk.orchestration.agent_pairings import (  # noqa: E402
    create_agent_pairing,
    create_agent_pairing_challenge,
    create_agent_pairing_session,
)
from peaq_os_sdk.orchestration.errors import OrchestrationNetworkError  # noqa: E402
from peaq_os_sdk.orchestration.market_orders import (  # noqa: E402
    confirm_market_order,
    create_market_order,
    create_payment_intent,
    dispute_market_order,
    execute_market_order,
    get_market_order,
    get_market_payment,
    list_market_orders,
    list_market_orders_all,
)
from peaq_os_sdk.orchestration.market_search import get_market_search, search_market  # noqa: E402
from peaq_os_sdk.orchestration.market_services import (  # noqa: E402
    GetMarketServiceOptions,
    ListMarketServicesOptions,
    get_market_service,
    list_market_services,
    list_market_services_all,
)
from peaq_os_sdk.orchestration.payments import (  # noqa: E402
    lock_escrow_payment,
    refund_payment,
    release_payment,
    submit_payment_proof,
)
from peaq_os_sdk.orchestration.types.agent_pairing import (  # noqa: E402
    AgentProofInput,
    CreateAgentPairingChallengeRequest,
    CreateAgentPairingRequest,
    CreateAgentPairingSessionRequest,
    DelegationPolicy,
)
from peaq_os_sdk.orchestration.types.market_order import (  # noqa: E402
    CreateMarketOrderBudget,
    CreateMarketOrderRequest,
    DisputeMarketOrderRequest,
    ExecuteMarketOrderRequest,
    HandoffExecutionResponse,
    NativeExecutionResponse,
)
from peaq_os_sdk.orchestration.types.market_search import MarketSearchBudget, MarketSearchRequest  # noqa: E402
from peaq_os_sdk.orchestration.types.payment import (  # noqa: E402
    CreatePaymentIntentRequest,
    LockEscrowPaymentRequest,
    PaymentIntentRailOptions,
    RefundPaymentRequest,
    ReleasePaymentRequest,
    SubmitPaymentProofRequest,
)
from peaq_os_sdk.stream.payment import transfer_token  # noqa: E402
from peaq_os_sdk.stream.types.payment import TokenPaymentRequest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chain"))
import harness  # noqa: E402  (test/chain: anvil with a test ERC-20)

USDT = "0xf4d9235269a96aadafc9adae454a0618ebe37949"  # peaq USDT in the SDK's token registry (6 decimals)
PAYEE = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"  # anvil account #5
ESCROW = "0x976EA74026E726554dB657fA54763abd0C3a0aa9"  # anvil account #6, standing in for an escrow contract
VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "sdk" / "market_order_vectors.json"


@pytest.fixture(scope="module")
def _anvil():
    with harness.TestChain() as chain:
        yield chain


@pytest.fixture
def chain(_anvil):
    snap = _anvil.snapshot()
    yield _anvil
    _anvil.revert(snap)


def pair(c: PeaqosClient, mid: str, key: str, policy: DelegationPolicy | None = None):
    """Pair the agent behind ``key`` with machine ``mid`` (EIP-191 proof); the pairing and its token."""
    addr = Account.from_key(key).address
    ch = create_agent_pairing_challenge(c, mid, CreateAgentPairingChallengeRequest(
        agent_address=addr, agent_provider="peaqos_node", agent_role="buyer")).item
    p = create_agent_pairing(c, mid, CreateAgentPairingRequest(
        agent_address=addr, agent_provider="peaqos_node", agent_role="buyer", delegation_policy=policy,
        agent_proof=AgentProofInput(challenge_id=ch.challenge_id, signature=sign(ch.message, key)))).item
    return p, p.pairing_token


def new_session(c: PeaqosClient, mid: str, pid: str, key: str) -> str:
    ch = create_agent_pairing_challenge(c, mid, CreateAgentPairingChallengeRequest(
        agent_address=Account.from_key(key).address, agent_provider="peaqos_node", agent_role="buyer")).item
    return create_agent_pairing_session(c, mid, pid, CreateAgentPairingSessionRequest(agent_proof=AgentProofInput(
        challenge_id=ch.challenge_id, signature=sign(ch.message, key)))).item.pairing_token


def wallet_service(sid: str = "svc_price", price: str = "1.5", **extra) -> dict:
    return {"id": sid, "serviceType": "oracle.price-feed", "operations": ["latest-price"], "price": price,
            "currency": "USDT", "railType": "wallet", "chain": "peaq", "token": "USDT", "tokenAddress": USDT,
            "tokenDecimals": 6, "payeeAddress": PAYEE, "executionMode": "native", **extra}


class Buyer:
    """A robot buying on the market: its machine record, a paired agent, the SDK client that pays on chain."""

    def __init__(self, orch, chain=None, policy: DelegationPolicy | None = None):
        self.orch, self.c = orch, sdk(orch)
        if chain is not None:
            self.key = chain.describe()["accounts"][3]["private_key"]
            self.token = chain.place_token(USDT, {Account.from_key(self.key).address: 1_000 * 10**6})
            orch.rpc_url = chain.rpc_url
            self.payer = PeaqosClient(rpc_url=chain.rpc_url, private_key=self.key, orchestration_url=orch.url,
                                      api_key=API_KEY)
            self.chain = chain
        else:
            self.key = "0x" + Account.create().key.hex().removeprefix("0x")
        self.address = Account.from_key(self.key).address
        self.machine = register(self.c)
        self.pairing, self.tok = pair(self.c, self.machine.id, self.key, policy)

    def order(self, service_id: str, **kw):
        return create_market_order(self.c, CreateMarketOrderRequest(
            machine_id=self.machine.id, agent_pairing_id=self.pairing.id, service_id=service_id, **kw), self.tok).item

    def intent(self, order_id: str, **rail):
        return create_payment_intent(self.c, order_id, CreatePaymentIntentRequest(
            rail=PaymentIntentRailOptions(**rail) if rail else None), self.tok).item

    def pay(self, to: str, amount: str) -> str:
        """The SDK's own ERC-20 transfer (stream.payment.transfer_token), mined."""
        paid = transfer_token(self.payer, TokenPaymentRequest(seller_address=to, amount=amount, token_address=USDT,
                                                              chain="peaq", order_id="x", token_decimals=6))
        assert self.chain.w3.eth.wait_for_transaction_receipt(paid.tx_hash, timeout=30)["status"] == 1
        return paid.tx_hash

    def proof(self, tx: str, amount: str = "1.5", raw: str = "1500000", **over) -> SubmitPaymentProofRequest:
        fields = dict(verification_mode="rpc", chain="peaq", token="USDT", payer_address=self.address,
                      payee_address=PAYEE, amount=amount, transaction_hash=tx, token_address=USDT, token_decimals=6,
                      raw_amount=raw)
        fields.update(over)
        return SubmitPaymentProofRequest(**fields)


def plain_http(orch, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None,
         timeout: float = 10):
    """A plain request (for what the SDK refuses to send); (status, parsed JSON or None)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    h = {"content-type": "application/json"} if data is not None else {}
    h.update(headers or {})
    req = urllib.request.Request(orch.url + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None)


def test_market_buyer_flow_wallet_rail_paid_on_chain_native_run(orch, chain):
    """Catalog → search → order from the quote → intent → the SDK's own ERC-20 transfer on anvil → rpc proof
    (held; the same proof again answers the same payment) → execute 200 (a second execute replays, no second run)
    → confirm (release_pending) → release (released); the order and payment read back."""
    b = Buyer(orch, chain)
    result = {"symbol": "BTC/USD", "price": "67000.5", "sourceId": 7, "nested": {"feed_key": "k"}}
    orch.seed_service(wallet_service(result=result))
    c, tok = b.c, b.tok
    [svc] = list_market_services(c).items
    assert (svc.id, svc.service_type, svc.execution_mode, svc.operations) == (
        "svc_price", "oracle.price-feed", "native", ("latest-price",))
    assert get_market_service(c, "svc_price", GetMarketServiceOptions(machine_id=b.machine.id),
                              pairing_token=tok).item.id == "svc_price"
    s = search_market(c, MarketSearchRequest(service_type="oracle.price-feed", operation="latest-price",
                                             budget=MarketSearchBudget(max=2.0, currency="USDT")), tok).item
    assert (s.status, s.machine_id, s.agent_pairing_id) == ("completed", b.machine.id, b.pairing.id)
    assert s.normalized_task.service_type == "oracle.price-feed" and s.normalized_task.operation == "latest-price"
    [q] = s.quotes
    assert (q.service_id, q.operation, q.pricing.mode, q.pricing.amount, q.pricing.currency) == (
        "svc_price", "latest-price", "fixed", 1.5, "USDT")
    assert (q.payment.default_rail, q.payment.required, q.payment.payee_address, q.payment.token_address,
            q.payment.payer_address, q.payment.chain) == ("wallet", True, PAYEE, USDT, b.address, "peaq")
    assert q.score > 0 and q.expires_at > s.created_at
    assert get_market_search(c, s.id).item.quotes[0].id == q.id
    order = b.order("svc_price", search_id=s.id, quote_id=q.id, input_payload={"symbol": "BTC/USD"})
    assert (order.status, order.quote_id, order.search_id, order.operation, order.payment.default_rail) == (
        "created", q.id, s.id, "latest-price", "wallet")
    assert get_market_payment(c, order.id).item is None  # {"item": null} before an intent
    assert plain_http(orch, "GET", f"/api/v1/market/orders/{order.id}/payment", headers={"x-api-key": API_KEY}) == (
        200, {"item": None})
    e = api_error(execute_market_order, c, order.id, ExecuteMarketOrderRequest(), tok)
    assert (e.code, e.status_code) == ("PAYMENT_REQUIRED", 409)

    pay = b.intent(order.id, type="wallet")
    assert (pay.status, pay.order_id, pay.machine_id, pay.amount, pay.currency) == (
        "intent_created", order.id, b.machine.id, 1.5, "USDT")
    assert (pay.rail.rail_type, pay.rail.chain, pay.rail.token, pay.rail.token_address, pay.rail.payee_address,
            pay.rail.payer_address) == ("wallet", "peaq", "USDT", USDT, PAYEE, b.address)
    assert pay.rail.metadata == {"amount": "1.5", "raw_amount": "1500000", "token_decimals": 6}
    assert get_market_order(c, order.id).item.status == "payment_pending"
    assert b.intent(order.id).id == pay.id  # asking again answers the same payment

    tx = b.pay(PAYEE, "1.5")
    assert b.token.functions.balanceOf(PAYEE).call() == 1_500_000
    held = submit_payment_proof(c, order.id, b.proof(tx), tok).item
    assert (held.id, held.status, held.proof.transaction_hash, held.proof.verification_mode,
            held.proof.payer_address) == (pay.id, "held", tx, "rpc", b.address)
    logged = orch.market_requests[-1]
    assert logged["path"] == f"/api/v1/market/orders/{order.id}/payment-proof" and logged["status"] == 200
    assert logged["json"] == {"verificationMode": "rpc", "chain": "peaq", "token": "USDT", "payerAddress": b.address,
                              "payeeAddress": PAYEE, "amount": "1.5", "transactionHash": tx, "tokenAddress": USDT,
                              "tokenDecimals": 6, "rawAmount": "1500000"}  # the body as the SDK sent it
    assert logged["headers"]["x-agent-pairing-token"] == "[REDACTED]" and tok not in json.dumps(orch.market_requests)
    again = submit_payment_proof(c, order.id, b.proof(tx), tok).item
    assert (again.id, again.status, again.proof.verified_at) == (held.id, "held", held.proof.verified_at)
    assert get_market_order(c, order.id).item.status == "ready"

    ex = execute_market_order(c, order.id, ExecuteMarketOrderRequest(input={"symbol": "BTC/USD"}), tok)
    assert isinstance(ex, NativeExecutionResponse) and ex.execution.status_code == 200
    assert ex.execution.outcome.result == result  # opaque: keys not snake-cased by the SDK
    assert (ex.execution.outcome.status, ex.execution.run.status, ex.execution.run.outcome_id) == (
        "completed", "completed", ex.execution.outcome.id)
    assert ex.order.status == "delivered" and orch.market_requests[-1]["status"] == 200
    ex2 = execute_market_order(c, order.id, ExecuteMarketOrderRequest(), tok)
    assert ex2.execution.run.id == ex.execution.run.id and orch.market_orders[order.id]["_runs"] == 1

    conf = confirm_market_order(c, order.id, tok)
    assert (conf.order.status, conf.payment.status) == ("confirmed", "release_pending")
    assert json.loads(orch.market_requests[-1]["body"]) == {}
    rel = release_payment(c, order.id, ReleasePaymentRequest(notes="thanks"), tok).item
    assert rel.status == "released" and "released: thanks" in rel.notes
    assert release_payment(c, order.id, None, tok).item.status == "released"  # bodyless, idempotent
    assert get_market_payment(c, order.id).item.status == "released"
    got = get_market_order(c, order.id)
    assert (got.item.status, got.item.input_payload) == ("confirmed", {"symbol": "BTC/USD"})
    assert get_market_order(c, order.id, pairing_token=tok).item.id == order.id
    assert [o.id for o in list_market_orders(c, machine_id=b.machine.id).items] == [order.id]
    assert [o.id for o in list_market_orders_all(c, machine_id=b.machine.id, limit=1)] == [order.id]


def test_market_payment_proof_is_checked_on_chain(orch, chain):
    """PAYMENT_NOT_MINED, PAYMENT_TX_FAILED, PAYMENT_TRANSFER_NOT_FOUND (short amount, another payer),
    PAYMENT_RPC_REQUIRED, proof fields that contradict the intent (VALIDATION_ERROR naming them), a transaction
    already used by another order, a second transaction for a held payment."""
    b = Buyer(orch, chain)
    orch.seed_service(wallet_service(price="2"))
    c, tok = b.c, b.tok
    o1, o2 = b.order("svc_price"), b.order("svc_price")
    b.intent(o1.id)
    b.intent(o2.id)

    def refused(order_id, proof):
        return api_error(submit_payment_proof, c, order_id, proof, tok)

    e = refused(o1.id, b.proof("0x" + "ab" * 32, "2", "2000000"))
    assert (e.code, e.status_code) == ("PAYMENT_NOT_MINED", 409)
    short = b.pay(PAYEE, "1.5")
    e = refused(o1.id, b.proof(short, "2", "2000000"))
    assert (e.code, e.status_code) == ("PAYMENT_TRANSFER_NOT_FOUND", 400)
    # a reverted transfer (more than the balance), mined with status 0
    poor = chain.describe()["accounts"][7]["address"]
    failed = b.token.functions.transfer(PAYEE, 5 * 10**6).transact({"from": poor, "gas": 200_000})
    assert chain.w3.eth.wait_for_transaction_receipt(failed)["status"] == 0
    e = refused(o1.id, b.proof("0x" + failed.hex().removeprefix("0x"), "2", "2000000", payer_address=poor))
    assert (e.code, e.status_code) == ("PAYMENT_TX_FAILED", 400)
    good = b.pay(PAYEE, "2")
    e = refused(o1.id, b.proof(good, "2", "2000000", payer_address=poor))  # the transfer is not from that payer
    assert e.code == "PAYMENT_TRANSFER_NOT_FOUND"
    for wire_field, over in (("payeeAddress", {"payee_address": ESCROW}), ("amount", {"amount": "1.9"}),
                             ("rawAmount", {"raw_amount": "1900000"}), ("tokenDecimals", {"token_decimals": 18}),
                             ("tokenAddress", {"token_address": ESCROW}), ("chain", {"chain": "base"})):
        e = refused(o1.id, b.proof(good, **{"amount": "2", "raw": "2000000", **over}))
        assert (e.code, e.status_code, e.details["field"]) == ("VALIDATION_ERROR", 400, wire_field)
    orch.rpc_url = None
    assert refused(o1.id, b.proof(good, "2", "2000000")).code == "PAYMENT_RPC_REQUIRED"
    orch.rpc_url = chain.rpc_url
    assert submit_payment_proof(c, o1.id, b.proof(good, "2", "2000000"), tok).item.status == "held"
    e = refused(o2.id, b.proof(good, "2", "2000000"))
    assert (e.code, e.status_code) == ("PAYMENT_TX_ALREADY_USED", 409)
    other = b.pay(PAYEE, "2")
    e = refused(o1.id, b.proof(other, "2", "2000000"))
    assert (e.code, e.status_code) == ("PAYMENT_ALREADY_RECORDED", 409)
    assert submit_payment_proof(c, o2.id, b.proof(other, "2", "2000000"), tok).item.status == "held"
    assert orch.market_used_txs == {good.lower(): o1.id, other.lower(): o2.id}


def test_market_escrow_handoff_dispute_refund_and_release(orch, chain):
    """Escrow rail: the transfer must reach the intent's escrow; a handoff service answers 202; dispute freezes
    the payment and opens a dispute, refund resolves it; on a native escrow order confirm → release."""
    b = Buyer(orch, chain)
    c, tok = b.c, b.tok
    handoff = {"label": "Book the slot", "url": "https://provider.example/book/42", "notes": ["opens in a browser"]}
    orch.seed_service({"id": "svc_rtk", "serviceType": "data.location", "operations": ["rtk-session"], "price": "3",
                       "currency": "USDT", "railType": "onchain-escrow", "tokenAddress": USDT, "tokenDecimals": 6,
                       "escrowAddress": ESCROW, "executionMode": "handoff", "handoff": handoff})
    orch.seed_service({"id": "svc_map", "serviceType": "data.location", "operations": ["tile"], "price": "0.5",
                       "currency": "USDT", "railType": "onchain-escrow", "tokenAddress": USDT, "tokenDecimals": 6,
                       "escrowAddress": ESCROW, "executionMode": "native", "result": {"tile": "z12/x/y"}})
    o = b.order("svc_rtk")
    pay = b.intent(o.id, type="onchain-escrow")
    assert (pay.rail.rail_type, pay.rail.escrow_address, pay.rail.payee_address, pay.amount) == (
        "onchain-escrow", ESCROW, None, 3)
    to_payee = b.pay(PAYEE, "3")
    e = api_error(lock_escrow_payment, c, o.id, LockEscrowPaymentRequest(to_payee, "peaq", ESCROW), tok)
    assert (e.code, e.status_code) == ("PAYMENT_TRANSFER_NOT_FOUND", 400)  # not into the escrow
    e = api_error(lock_escrow_payment, c, o.id, LockEscrowPaymentRequest(to_payee, "peaq", PAYEE), tok)
    assert (e.code, e.details["field"]) == ("VALIDATION_ERROR", "escrowAddress")
    e = api_error(submit_payment_proof, c, o.id, b.proof(to_payee, "3", "3000000"), tok)
    assert (e.code, e.details["field"]) == ("VALIDATION_ERROR", "rail")  # escrow rails lock, not prove
    tx = b.pay(ESCROW, "3")
    held = lock_escrow_payment(c, o.id, LockEscrowPaymentRequest(tx, "peaq", ESCROW), tok).item
    assert (held.status, held.proof.transaction_hash, held.proof.payer_address, held.proof.verification_mode) == (
        "held", tx, b.address, "rpc")
    assert lock_escrow_payment(c, o.id, LockEscrowPaymentRequest(tx, "peaq", ESCROW), tok).item.id == held.id
    ex = execute_market_order(c, o.id, ExecuteMarketOrderRequest(), tok)
    assert isinstance(ex, HandoffExecutionResponse) and ex.execution.status_code == 202
    assert (ex.execution.handoff.label, ex.execution.handoff.url, ex.execution.handoff.notes) == (
        "Book the slot", "https://provider.example/book/42", ("opens in a browser",))
    assert ex.order.status == "handoff" and orch.market_requests[-1]["status"] == 202
    d = dispute_market_order(c, o.id, DisputeMarketOrderRequest(reason="never delivered",
                                                                 evidence={"photo_url": "https://x/1.jpg"}), tok)
    assert (d.order.status, d.payment.status, d.dispute.status, d.dispute.reason, d.dispute.order_id) == (
        "disputed", "frozen", "open", "never delivered", o.id)
    assert d.dispute.evidence == {"photo_url": "https://x/1.jpg"}
    assert orch.market_requests[-1]["json"]["evidence"] == {"photoUrl": "https://x/1.jpg"}  # the SDK camel-cases it
    e = api_error(confirm_market_order, c, o.id, tok)
    assert (e.code, e.status_code) == ("ORDER_CLOSED", 409)
    assert api_error(release_payment, c, o.id, None, tok).code == "PAYMENT_STATE_INVALID"
    ref = refund_payment(c, o.id, RefundPaymentRequest(reason="dispute upheld"), tok).item
    assert ref.status == "refunded" and orch.market_disputes[o.id]["status"] == "resolved"
    assert refund_payment(c, o.id, None, tok).item.status == "refunded"

    o2 = b.order("svc_map")
    b.intent(o2.id)
    lock_escrow_payment(c, o2.id, LockEscrowPaymentRequest(b.pay(ESCROW, "0.5"), "peaq", ESCROW), tok)
    ex = execute_market_order(c, o2.id, ExecuteMarketOrderRequest(), tok)
    assert isinstance(ex, NativeExecutionResponse) and ex.execution.outcome.result == {"tile": "z12/x/y"}
    e = api_error(release_payment, c, o2.id, None, tok)
    assert (e.code, e.status_code) == ("PAYMENT_STATE_INVALID", 409)  # release follows confirmation
    assert confirm_market_order(c, o2.id, tok).payment.status == "release_pending"
    assert release_payment(c, o2.id, ReleasePaymentRequest(transaction_hash="0x" + "cd" * 32), tok).item.status == \
        "released"
    assert api_error(refund_payment, c, o2.id, None, tok).code == "PAYMENT_STATE_INVALID"


def test_market_delegation_policy_is_enforced_at_the_payment_intent(orch):
    """Per-transaction and daily limits, denied service ids and skill keys, a free service, the daily sum
    starting again the next UTC day; errors come out as the SDK's OrchestrationApiError with the code."""
    policy = DelegationPolicy(allowed_skill_keys=(), denied_skill_keys=("skill.blocked",), allowed_service_ids=(),
                              denied_service_ids=("svc_denied",), per_transaction_limit=5.0, daily_spend_limit=12.0,
                              currency="USDT")
    b = Buyer(orch, policy=policy)
    for sid, price, extra in (("svc_5", "5", {}), ("svc_6", "6", {}), ("svc_denied", "1", {}),
                              ("svc_skill", "1", {"skillKey": "skill.blocked"}), ("svc_free", "0", {})):
        orch.seed_service(wallet_service(sid, price, **extra))
    e = api_error(b.intent, b.order("svc_6").id)
    assert isinstance(e, OrchestrationApiError) and (e.code, e.status_code) == ("AGENT_SPEND_LIMIT_EXCEEDED", 403)
    assert (e.details["limit"], e.details["amount"]) == (5.0, 6)
    assert b.intent(b.order("svc_5").id).status == "intent_created"
    assert b.intent(b.order("svc_5").id).status == "intent_created"
    e = api_error(b.intent, b.order("svc_5").id)
    assert (e.code, e.status_code, e.details["spent_today"]) == ("AGENT_DAILY_LIMIT_EXCEEDED", 403, 10)
    e = api_error(b.intent, b.order("svc_denied").id)
    assert (e.code, e.status_code, e.details["field"]) == ("AGENT_POLICY_DENIED", 403, "serviceId")
    e = api_error(b.intent, b.order("svc_skill").id)
    assert (e.code, e.details["field"]) == ("AGENT_POLICY_DENIED", "skillKey")
    free = b.order("svc_free")
    assert free.status == "ready" and free.payment.default_rail == "not-required" and not free.payment.required
    assert b.intent(free.id).status == "not_required"
    ex = execute_market_order(b.c, free.id, ExecuteMarketOrderRequest(), b.tok)
    assert ex.execution.outcome.result == {"ok": True}
    orch.clock_offset += 86_400  # the next day (a new session: the old one lapsed)
    b.tok = new_session(b.c, b.machine.id, b.pairing.id, b.key)
    assert b.intent(b.order("svc_5").id).status == "intent_created"


def test_market_catalog_search_and_order_refusals(orch):
    """Filters and paging of the catalog, search matching and scoring, and the refusals of order create:
    unknown service / quote / search, a quote of another service, an expired quote, ids not the pairing's."""
    b = Buyer(orch)
    c, tok = b.c, b.tok
    orch.seed_service(wallet_service("svc_a", "1", capabilities=["rtk"]))
    orch.seed_service(wallet_service("svc_b", "3", executionMode="handoff"))
    orch.seed_service(wallet_service("svc_c", "1", serviceType="storage.object", operations=["put", "get"]))
    assert {s.id for s in list_market_services_all(c, limit=1)} == {"svc_a", "svc_b", "svc_c"}
    page = list_market_services(c, limit=2)
    assert len(page.items) == 2 and page.next_cursor
    assert [s.id for s in list_market_services(c, ListMarketServicesOptions(
        execution_mode="external-handoff")).items] == ["svc_b"]
    assert [s.id for s in list_market_services(c, ListMarketServicesOptions(service_type="storage.object"),
                                               pairing_token=tok).items] == ["svc_c"]
    e = api_error(get_market_service, c, "svc_nope")
    assert (e.code, e.status_code) == ("NOT_FOUND", 404)
    assert api_error(list_market_services, sdk(orch, api_key=None)).code == "AUTH_REQUIRED"

    s = search_market(c, MarketSearchRequest(service_type="oracle.price-feed", budget=MarketSearchBudget(max=2.0)),
                      tok).item
    assert [q.service_id for q in s.quotes] == ["svc_a", "svc_b"]  # native first; svc_b is also over budget
    assert any("above the budget" in r for r in s.quotes[1].reasons)
    assert [q.service_id for q in search_market(c, MarketSearchRequest(
        service_type="oracle.price-feed", require_native_execution=True), tok).item.quotes] == ["svc_a"]
    assert [q.service_id for q in search_market(c, MarketSearchRequest(
        required_capabilities=("rtk",)), tok).item.quotes] == ["svc_a"]
    assert [q.service_id for q in search_market(c, MarketSearchRequest(
        service_type="storage", operation="get"), tok).item.quotes] == ["svc_c"]  # a type prefix matches
    none = search_market(c, MarketSearchRequest(service_type="compute.marketplace"), tok).item
    assert (none.status, none.quotes) == ("no_match", ())
    assert api_error(get_market_search, c, "srch_nope").code == "NOT_FOUND"
    status, body = plain_http(orch, "POST", "/api/v1/market/search", {}, {"x-api-key": API_KEY})
    assert (status, body["error"]["code"]) == (401, "AGENT_PAIRING_REQUIRED")

    e = api_error(b.order, "svc_nope")
    assert (e.code, e.status_code, e.details["field"]) == ("NOT_FOUND", 404, "serviceId")
    e = api_error(b.order, "svc_a", quote_id="qte_nope")
    assert (e.code, e.status_code, e.details["field"]) == ("NOT_FOUND", 404, "quoteId")
    e = api_error(b.order, "svc_a", search_id="srch_nope")
    assert (e.code, e.details["field"]) == ("NOT_FOUND", "searchId")
    e = api_error(b.order, "svc_b", quote_id=s.quotes[0].id)
    assert (e.code, e.details["field"]) == ("VALIDATION_ERROR", "quoteId")
    e = api_error(b.order, "svc_c", operation="delete")
    assert (e.code, e.details["field"]) == ("VALIDATION_ERROR", "operation")
    e = api_error(create_market_order, c, CreateMarketOrderRequest(
        machine_id=b.machine.id, agent_pairing_id="apr_other", service_id="svc_a"), tok)
    assert (e.code, e.status_code) == ("AGENT_POLICY_DENIED", 403)
    o = b.order("svc_a", quote_id=s.quotes[0].id, budget=CreateMarketOrderBudget(max=2.0, currency="USDT"))
    assert (o.budget.amount, o.budget.currency) == (2.0, "USDT")
    e = api_error(confirm_market_order, c, o.id, tok)
    assert (e.code, e.status_code) == ("ORDER_NOT_DELIVERED", 409)
    orch.clock_offset += orch.quote_ttl + 1
    e = api_error(b.order, "svc_a", quote_id=s.quotes[0].id)
    assert (e.code, e.status_code) == ("QUOTE_EXPIRED", 409)
    # another agent of the same machine sees neither the order nor its payment actions
    _, tok2 = pair(c, b.machine.id, "0x" + "33" * 32)
    e = api_error(get_market_order, c, o.id, pairing_token=tok2)
    assert (e.code, e.status_code) == ("AGENT_POLICY_DENIED", 403)
    assert api_error(create_payment_intent, c, o.id, CreatePaymentIntentRequest(), tok2).code == "AGENT_POLICY_DENIED"
    status, body = plain_http(orch, "GET", "/api/v1/market/orders", headers={"x-api-key": API_KEY})
    assert (status, body["error"]["details"]["field"]) == (400, "machineId")


def test_market_mock_controls(orch):
    """Over HTTP, as a test in another language would: seed a service, read the request log and the run counts,
    make the next calls of a path fail (503) or hang (before or after the work), take the market down, set a
    pairing's delegation policy, shorten the quote lifetime."""
    def ctl(method, name, body=None):
        return plain_http(orch, method, f"/__mock__/market/{name}", body)

    b = Buyer(orch)
    c, tok = b.c, b.tok
    status, body = ctl("POST", "services", {"id": "svc_ctl", "serviceType": "device.control", "operation": "open",
                                            "price": "0"})
    assert status == 200 and body["item"]["id"] == "svc_ctl"
    status, body = ctl("POST", "services", {"id": "svc_bad", "serviceType": "x", "operation": "o", "price": "1",
                                            "railType": "wallet"})
    assert (status, body["error"]["code"]) == (400, "VALIDATION_ERROR") and "payeeAddress" in body["error"]["message"]
    o = b.order("svc_ctl")

    assert ctl("POST", "faults", {"path": "/api/v1/market/orders/*/execute", "times": 2})[0] == 200
    for _ in range(2):
        e = api_error(execute_market_order, c, o.id, ExecuteMarketOrderRequest(), tok)
        assert (e.code, e.status_code) == ("UNAVAILABLE", 503)
    assert ctl("GET", "runs")[1] == {"runs": {o.id: 0}}
    execute_market_order(c, o.id, ExecuteMarketOrderRequest(), tok)
    execute_market_order(c, o.id, ExecuteMarketOrderRequest(), tok)
    assert ctl("GET", "runs")[1] == {"runs": {o.id: 1}}

    # hang before the work: nothing happens, the connection drops
    ctl("POST", "faults", {"path": "/api/v1/market/search", "mode": "hang", "seconds": 0.5})
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        plain_http(orch, "POST", "/api/v1/market/search", {}, {"x-agent-pairing-token": tok})
    assert orch.market_searches == {}
    # hang after the work: the order exists, its answer is lost
    ctl("POST", "faults", {"path": "/api/v1/market/orders", "method": "POST", "mode": "hang", "after": True,
                           "seconds": 0.2})
    with pytest.raises(OrchestrationNetworkError):
        b.order("svc_ctl")
    assert len(orch.market_orders) == 2 and orch.market_requests[-1]["fault"] == "hang-after"

    assert ctl("POST", "down", {"down": True})[1] == {"down": True}
    e = api_error(list_market_services, c)
    assert (e.code, e.status_code) == ("UNAVAILABLE", 503)
    ctl("POST", "down", {"down": False})
    assert [s.id for s in list_market_services(c).items] == ["svc_ctl"]

    status, log = ctl("GET", "requests")
    assert status == 200 and [r["status"] for r in log["items"] if r["path"].endswith("/execute")] == \
        [503, 503, 200, 200]
    first = next(r for r in log["items"] if r["method"] == "POST" and r["path"] == "/api/v1/market/orders")
    assert first["json"] == {"machineId": b.machine.id, "agentPairingId": b.pairing.id, "serviceId": "svc_ctl"}
    assert first["auth"] == {"platform": True, "pairing": True} and first["headers"]["x-api-key"] == "[REDACTED]"
    assert tok not in json.dumps(log) and API_KEY not in json.dumps(log)
    assert ctl("DELETE", "requests")[0] == 200 and ctl("GET", "requests")[1] == {"items": []}

    orch.seed_service(wallet_service("svc_9", "9"))
    status, body = ctl("POST", "policy", {"delegationPolicy": {"perTransactionLimit": 5}})
    assert status == 200 and body["item"]["delegationPolicy"]["perTransactionLimit"] == 5
    assert api_error(b.intent, b.order("svc_9").id).code == "AGENT_SPEND_LIMIT_EXCEEDED"
    ctl("POST", "policy", {"pairingId": b.pairing.id, "delegationPolicy": {"perTransactionLimit": 10}})
    assert b.intent(b.order("svc_9").id).status == "intent_created"

    assert ctl("POST", "config", {"quoteTtlSeconds": 1})[1] == {"quoteTtlSeconds": 1.0}
    q = search_market(c, MarketSearchRequest(service_type="device.control"), tok).item.quotes[0]
    orch.clock_offset += 2
    assert api_error(b.order, "svc_ctl", quote_id=q.id).code == "QUOTE_EXPIRED"
    state = ctl("GET", "state")[1]
    assert {"services", "searches", "orders", "payments", "disputes", "runs", "usedTransactions", "down"} <= set(state)
    assert ctl("GET", "nope")[0] == 404


def test_market_malformed_input_is_a_400_naming_the_field(orch):
    """Never a crash, never a 500: every malformed body of the market endpoints is VALIDATION_ERROR naming the
    field (the SDK would not send these, so they go out as plain HTTP)."""
    b = Buyer(orch)
    orch.seed_service(wallet_service())
    o = b.order("svc_price")
    agent = {"x-agent-pairing-token": b.tok}
    op = f"/api/v1/market/orders/{o.id}"
    cases = [
        ("/api/v1/market/search", [], "body"),
        ("/api/v1/market/search", {"maxResults": "9"}, "maxResults"),
        ("/api/v1/market/search", {"maxResults": 10**9}, "maxResults"),
        ("/api/v1/market/search", {"budget": {"max": -1}}, "budget.max"),
        ("/api/v1/market/search", {"budget": {"max": True}}, "budget.max"),
        ("/api/v1/market/search", {"budget": []}, "budget"),
        ("/api/v1/market/search", {"requiredCapabilities": "rtk"}, "requiredCapabilities"),
        ("/api/v1/market/search", {"allowExternalHandoff": "yes"}, "allowExternalHandoff"),
        ("/api/v1/market/search", {"service_type": "x"}, "service_type"),
        ("/api/v1/market/orders", {}, "machineId"),
        ("/api/v1/market/orders", {"machineId": b.machine.id, "agentPairingId": b.pairing.id}, "serviceId"),
        ("/api/v1/market/orders", {"machineId": b.machine.id, "agentPairingId": b.pairing.id, "serviceId": 7},
         "serviceId"),
        ("/api/v1/market/orders", {"machineId": b.machine.id, "agentPairingId": b.pairing.id,
                                   "serviceId": "svc_price", "input": "x"}, "input"),
        ("/api/v1/market/orders", {"machineId": b.machine.id, "agentPairingId": b.pairing.id,
                                   "serviceId": "svc_price", "budget": {"max": "lots"}}, "budget.max"),
        (op + "/payment-intent", {"rail": "wallet"}, "rail"),
        (op + "/payment-intent", {"rail": {"tokenAddress": "0x12"}}, "rail.tokenAddress"),
        (op + "/payment-intent", {"rail": {"type": 3}}, "rail.type"),
        (op + "/payment-intent", {"amount": "1,5"}, "amount"),
        (op + "/payment-proof", {"verificationMode": "trust-me"}, "verificationMode"),
        (op + "/payment-proof", {"verificationMode": "rpc", "transactionHash": "0x12"}, "transactionHash"),
        (op + "/payment-proof", {"verificationMode": "rpc", "transactionHash": "0x" + "ab" * 32}, "chain"),
        (op + "/payment-proof", {"verificationMode": "rpc", "transactionHash": "0x" + "ab" * 32, "chain": "peaq",
                                 "token": "USDT", "payerAddress": b.address, "payeeAddress": PAYEE,
                                 "amount": 1.5}, "amount"),
        (op + "/payment-proof", {"payment": {"paymentSignature": "x"}}, "payment"),
        (op + "/payment-proof", {"transactionSignature": "5abc", "verificationMode": "rpc"}, "transactionSignature"),
        (op + "/payment/escrow-lock", {"transactionHash": "0x" + "ab" * 32, "chain": "peaq"}, "escrowAddress"),
        (op + "/payment/release", {"transactionHash": 5}, "transactionHash"),
        (op + "/payment/refund", ["x"], "body"),
        (op + "/execute", {"input": [1]}, "input"),
        (op + "/execute", {"payment": {"paymentSignature": "x"}}, "payment"),
        (op + "/confirm", {"why": "x"}, "why"),
        (op + "/dispute", {"reason": " "}, "reason"),
        (op + "/dispute", {"reason": "r", "evidence": "photo"}, "evidence"),
    ]
    for path, body, field in cases:
        status, got = plain_http(orch, "POST", path, body, agent)
        assert status == 400 and got["error"]["code"] == "VALIDATION_ERROR", (path, body, got)
        assert got["error"]["details"]["field"] == field, (path, body, got)
    for raw in (b"{", b"\xff\xfe", b"null", b"[1, 2", b"[" * 200_000, b'{"a":' * 100_000):
        status, got = plain_http(orch, "POST", "/api/v1/market/search", raw=raw, headers=agent)
        assert status == 400 and got["error"]["code"] == "VALIDATION_ERROR", raw[:20]
    conn = http.client.HTTPConnection(orch.url.removeprefix("http://"), timeout=10)
    conn.putrequest("POST", "/api/v1/market/search")
    conn.putheader("content-length", "lots")
    conn.endheaders()
    r = conn.getresponse()
    assert (r.status, json.loads(r.read())["error"]["details"]["field"]) == (400, "content-length")
    conn.close()
    status, got = plain_http(orch, "POST", "/__mock__/market/policy", {"delegationPolicy": {"currency": 5}})
    assert (status, got["error"]["code"]) == (400, "VALIDATION_ERROR") and "delegationPolicy.currency" in \
        got["error"]["message"]
    platform = {"x-api-key": API_KEY}
    for query, field in (("?machineId=" + b.machine.id + "&limit=0", "limit"), ("?limit=x", "limit"),
                         ("?cursor=zz", "cursor"), ("?executionMode=slow", "executionMode")):
        path = ("/api/v1/market/orders" if "machineId" in query else "/api/v1/market/services") + query
        status, got = plain_http(orch, "GET", path, headers=platform)
        assert (status, got["error"]["details"]["field"]) == (400, field), path
    assert plain_http(orch, "GET", "/api/v1/market/nope", headers=platform)[0] == 404
    assert all(r["status"] != 500 for r in orch.market_requests)
    assert orch.market_orders[o.id]["status"] == "created"  # nothing above changed the order


def test_market_program_flags(tmp_path):
    """``--market-services FILE`` seeds the catalog at start, ``--quote-ttl`` sets the quote lifetime, the market
    records survive a kill with ``--state-file``; a bad seed file stops the program with exit code 2 and a message
    naming the field."""
    seeds = tmp_path / "services.json"
    seeds.write_text(json.dumps([wallet_service(), {**wallet_service("svc_free", "0"), "executionMode": "handoff"}]))
    state = tmp_path / "state.json"

    def run(*more: str):
        p = subprocess.Popen([sys.executable, str(Path(mock.__file__)), "--port", "0", "--state-file", str(state),
                              *more], stdout=subprocess.PIPE, text=True)
        return p, json.loads(p.stdout.readline())

    def services(info) -> list[str]:
        req = urllib.request.Request(info["apiBase"] + "/market/services", headers={"x-api-key": info["apiKey"]})
        with urllib.request.urlopen(req, timeout=5) as r:
            return [s["id"] for s in json.load(r)["items"]]

    p, info = run("--market-services", str(seeds), "--quote-ttl", "42")
    try:
        assert services(info) == ["svc_price", "svc_free"]
        with urllib.request.urlopen(info["url"] + "/__mock__/market/state", timeout=5) as r:
            assert json.load(r)["quoteTtlSeconds"] == 42.0
        req = urllib.request.Request(info["url"] + "/__mock__/market/services", method="POST", data=json.dumps(
            wallet_service("svc_late")).encode(), headers={"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=5).close()
    finally:
        p.kill()  # like kill -9: the records written after each change stay
        p.wait(timeout=5)
    p, info = run()
    try:
        assert services(info) == ["svc_price", "svc_free", "svc_late"]
    finally:
        p.terminate()
        assert p.wait(timeout=5) == 0
    seeds.write_text(json.dumps([{"id": "svc_x", "serviceType": "t", "operation": "o", "price": "1.1234567",
                                  "payeeAddress": PAYEE}]))
    r = subprocess.run([sys.executable, str(Path(mock.__file__)), "--port", "0", "--market-services", str(seeds)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "price" in r.stderr and r.stdout == ""


def test_market_order_vectors_are_what_the_sdk_makes():
    """test/fixtures/sdk/market_order_vectors.json is regenerated with the installed SDK and compared whole, so it
    cannot rot (PROVENANCE.md says how it was made)."""
    sys.path.insert(0, str(VECTORS.parent))
    import gen_market_order_vectors as gen
    stored = json.loads(VECTORS.read_text())
    assert stored["sdk"] == "peaq-os-sdk 0.12.1"
    assert gen.generate() == stored
    # and the vector says what it should: the proof body in camelCase, transfer(payee, 1.5 * 10^6)
    proof, tx = stored["payment_proof_request"], stored["erc20_transfer"]
    assert proof["body"]["rawAmount"] == "1500000" and json.loads(proof["body_text"]) == proof["body"]
    assert tx["data"] == "0xa9059cbb" + PAYEE[2:].lower().rjust(64, "0") + hex(1_500_000)[2:].rjust(64, "0")
    assert (tx["to"].lower(), tx["value"], tx["from"]) == (USDT, 0, stored["inputs"]["payer_address"])
