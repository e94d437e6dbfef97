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
import threading
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
