#!/usr/bin/env python3
"""Local peaqOS Machine Markets ("orchestration") test server: the endpoints a robot seller calls.

Shapes, auth modes and error codes follow what ``peaq-os-sdk`` 0.12.1 sends and parses (see
``test/market/README.md`` and its provenance note); ``test_orchestrator_sdk.py`` keeps it honest
by driving the real SDK's orchestration functions against it.

Usage::

    python3 test/market/orchestrator.py [--port N] [--api-key K] [--controller 42=0xADDR ...]
        [--rpc-url URL] [--market-services FILE] [--quote-ttl S]

prints ONE JSON line ``{"url", "apiBase", "apiKey", "pid"}`` and serves on 127.0.0.1 until SIGTERM/SIGINT.
Needs ``eth_account`` (installed with peaq-os-sdk) to verify EIP-191 identity proofs.

Served under ``/api/v1`` (SDK): health, readiness, machine identity challenges, machines (list/create/get/
patch/archive), machine agents (list/enroll/revoke), agent heartbeat; the buyer's pairing and stream purchases
(``buyer_side.py``) and market orders (``market_orders.py``: services, search, orders, payment, execute,
confirm, dispute, settlement). Test controls (never part of the real API) under ``/__mock__/``:
``controllers``, ``faults``, ``clock``, ``config``, ``state``, and ``market/…`` (see test/market/README.md).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import queue
import json
import os
import struct
import re
import secrets
import select
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:
    from eth_account import Account
    from eth_account.messages import encode_defunct
except ImportError:  # pragma: no cover - reported at start
    Account = None  # type: ignore[assignment]

# buyer_side imports this module by name: run as a script, this module is __main__, and one copy of
# ApiError must serve both
sys.modules.setdefault("orchestrator", sys.modules[__name__])
from buyer_side import BuyerSide  # noqa: E402
from market_orders import MarketOrders  # noqa: E402

API = "/api/v1"
UINT256_MAX = 2**256 - 1
MACHINE_STATUSES = ("draft", "active", "degraded", "blocked", "archived")
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 500
DEFAULT_API_KEY = "test-platform-key"
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
_ENDPOINT_KEYS = {  # heartbeat endpoints[]: the SDK sends snake_case with nulls; accept camelCase too
    "providerKey": "provider_key", "endpointBaseUrl": "endpoint_base_url", "label": "label",
    "authType": "auth_type", "authToken": "auth_token", "modelAlias": "model_alias",
    "networkScope": "network_scope", "probePath": "probe_path",
}


JSON_MAX_DEPTH = 100


def loads_json(raw: bytes | str) -> Any:
    """``json.loads`` for client input, refusing (ValueError) nesting deeper than JSON_MAX_DEPTH first:
    eth_account raises the recursion limit to 100000, so the C decoder would overflow a server thread's
    stack on a deeply nested body and kill the process instead of raising RecursionError."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > JSON_MAX_DEPTH:
        depth, in_str, esc = 0, False, False
        for b in data:
            if in_str:
                if esc:
                    esc = False
                elif b == 0x5C:  # backslash
                    esc = True
                elif b == 0x22:
                    in_str = False
            elif b == 0x22:
                in_str = True
            elif b in (0x5B, 0x7B):
                depth += 1
                if depth > JSON_MAX_DEPTH:
                    raise ValueError(f"nested deeper than {JSON_MAX_DEPTH} levels")
            elif b in (0x5D, 0x7D):
                depth -= 1
    return json.loads(raw)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def validation(field: str, message: str) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", f"{field}: {message}", {"field": field})


def canonical_identity_ref(value: Any, field: str = "identityRef") -> str:
    """``did:peaq:<d>`` or ``peaqos:machine:<d>`` (d canonical decimal uint256) → ``did:peaq:<d>``."""
    if isinstance(value, str):
        for prefix in ("did:peaq:", "peaqos:machine:"):
            rest = value[len(prefix):] if value.startswith(prefix) else None
            if rest is not None and _DECIMAL.match(rest) and int(rest) <= UINT256_MAX:
                return "did:peaq:" + rest
    raise validation(field, "must be did:peaq:<decimal machine id> or peaqos:machine:<decimal machine id>")


def _str(body: dict, key: str, *, required: bool = True, non_blank: bool = False) -> str | None:
    v = body.get(key)
    if v is None:
        if required:
            raise validation(key, "is required")
        return None
    if not isinstance(v, str) or (non_blank and not v.strip()):
        raise validation(key, "must be a non-empty string" if non_blank else "must be a string")
    return v


def _str_list(body: dict, key: str) -> list[str] | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise validation(key, "must be an array of strings")
    return v


def _str_map(body: dict, key: str) -> dict[str, str] | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise validation(key, "must be an object of strings")
    return v


def _only(body: dict, allowed: set[str]) -> None:
    for k in body:
        if k not in allowed:
            raise validation(k, "unknown field")


class Orchestrator(MarketOrders, BuyerSide):
    """All server state, behind one lock. Times come from :meth:`now` (real time + a test offset)."""

    def __init__(self, api_key: str = DEFAULT_API_KEY, controllers: dict[str, list[str]] | None = None,
                 challenge_ttl: float = 300.0, lease_ttl: int = 60, token_field: str = "provisioningToken"):
        self.lock = threading.RLock()
        self.api_key = api_key
        self.controllers = dict(controllers or {})  # canonical DID (or "*") -> addresses
        self.challenge_ttl = challenge_ttl
        self.lease_ttl = lease_ttl
        self.token_field = token_field  # provisioningToken | agentToken | both
        self.activation_needs_fresh_proof = False  # PATCH status=active must carry a new identityProof
        self.clock_offset = 0.0
        self.challenges: dict[str, dict] = {}
        self.machines: dict[str, dict] = {}
        self.agents: dict[str, dict] = {}
        self.agent_tokens: dict[str, str] = {}
        self.listings: dict[str, dict] = {}  # "<machineId>/<listingId>" -> listing
        self.delivery_capabilities: dict[str, dict] = {}  # machineId -> registration
        self.purchases: dict[str, dict] = {}  # purchaseId -> purchase (+ "_access", "_session", "_events")
        self.sockets: list[tuple[str, queue.Queue]] = []  # open control sockets: (machineId, outbox)
        self.socket_connects = 0
        self.faults: list[dict] = []
        self.requests: list[dict] = []
        self.state_file: str | None = None  # --state-file: records survive a restart (kill -9 tests)
        self.runtime_endpoints: dict[str, dict] = {}  # "<machineId>/<providerKey>" -> endpoint
        self.pairings: dict[str, dict] = {}  # buyer side (buyer_side.py)
        self.pairing_tokens: dict[str, str] = {}
        self.pairing_challenges: dict[str, dict] = {}
        self.rpc_url: str | None = None  # --rpc-url: payment proofs with verificationMode "rpc"
        self.init_market()  # market services, searches, orders, payments (market_orders.py)

    # ---- persistence (test support: a restarted server keeps its records) ---------------------
    _PERSISTED = ("machines", "agents", "agent_tokens", "challenges", "listings", "delivery_capabilities", "purchases",
                  "pairings", "pairing_tokens", "pairing_challenges", "runtime_endpoints",
                  "market_services", "market_searches", "market_orders", "market_payments", "market_disputes",
                  "market_used_txs")

    def load(self, path: str) -> None:
        self.state_file = path
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return
        for k in self._PERSISTED:
            setattr(self, k, data.get(k, {}))

    def save(self) -> None:
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({k: getattr(self, k) for k in self._PERSISTED}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    # ---- time -------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def iso(self, t: float | None = None) -> str:
        t = self.now() if t is None else t
        return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # ---- auth -------------------------------------------------------------------------------
    def require_platform(self, headers) -> None:
        key = headers.get("x-api-key")
        if key is None or key == "":
            raise ApiError(401, "AUTH_REQUIRED", "x-api-key header required")
        if not secrets.compare_digest(key.encode(), self.api_key.encode()):
            raise ApiError(401, "AUTH_INVALID", "x-api-key is not valid")

    # ---- machine identity ---------------------------------------------------------------------
    def create_challenge(self, body: dict) -> tuple[int, dict]:
        _only(body, {"identityRef"})
        ref = canonical_identity_ref(body.get("identityRef"))
        controllers = self.controllers.get(ref) or self.controllers.get("*")
        if not controllers:
            raise ApiError(503, "PEAQOS_IDENTITY_UNAVAILABLE", f"no controller resolved for {ref}",
                           {"identityRef": ref})
        cid = "mic_" + secrets.token_hex(8)
        expires = self.now() + self.challenge_ttl
        message = (f"peaqOS machine identity challenge\nidentityRef: {ref}\nchallengeId: {cid}\n"
                   f"nonce: {secrets.token_hex(16)}\nexpiresAt: {self.iso(expires)}")
        ch = {"challengeId": cid, "identityRef": ref, "message": message, "expiresAt": self.iso(expires),
              "verificationMethod": "eip191", "controllerAddresses": list(controllers)}
        self.challenges[cid] = {**ch, "_expires": expires, "_used": False}
        return 201, {"item": ch}

    def verify_proof(self, proof: Any, ref: str) -> dict:
        """Check an identityProof for ``ref``; return the stored MachineIdentityProof (not yet consuming it)."""
        if proof is None:
            raise ApiError(400, "MACHINE_IDENTITY_PROOF_REQUIRED", "identityProof is required",
                           {"field": "identityProof"})
        if not isinstance(proof, dict):
            raise validation("identityProof", "must be an object")
        _only(proof, {"challengeId", "signature"})
        cid = _str(proof, "challengeId", non_blank=True)
        sig = _str(proof, "signature", non_blank=True)
        ch = self.challenges.get(cid)
        if ch is None or ch["_used"] or ch["identityRef"] != ref:
            raise ApiError(400, "MACHINE_IDENTITY_PROOF_INVALID", "unknown, used or mismatched identity challenge",
                           {"field": "identityProof.challengeId"})
        if self.now() >= ch["_expires"]:
            raise ApiError(400, "MACHINE_IDENTITY_PROOF_EXPIRED", "identity challenge expired",
                           {"challengeId": cid, "expiresAt": ch["expiresAt"]})
        try:
            signer = Account.recover_message(encode_defunct(text=ch["message"]), signature=sig)
        except Exception:  # noqa: BLE001 - any malformed signature is an invalid proof
            raise ApiError(400, "MACHINE_IDENTITY_PROOF_INVALID", "signature is not a valid EIP-191 signature",
                           {"field": "identityProof.signature"}) from None
        if signer.lower() not in {a.lower() for a in ch["controllerAddresses"]}:
            raise ApiError(400, "MACHINE_IDENTITY_PROOF_INVALID", "signer is not a controller of the identity",
                           {"field": "identityProof.signature", "signerAddress": signer})
        return {"method": "eip191", "identityRef": ref, "signerAddress": signer, "challengeId": cid,
                "verifiedAt": self.iso(), "challengeExpiresAt": ch["expiresAt"],
                "controllerAddresses": list(ch["controllerAddresses"]), "resolutionSource": "peaqos-mcr"}

    # ---- machines -----------------------------------------------------------------------------
    def machine(self, mid: str) -> dict:
        m = self.machines.get(mid)
        if m is None:
            raise ApiError(404, "NOT_FOUND", f"machine {mid} not found", {"machineId": mid})
        return m

    def create_machine(self, body: dict) -> tuple[int, dict]:
        _only(body, {"displayName", "ownerId", "machineType", "runtimeProfile", "identityRef", "identityProof",
                     "capabilities", "labels", "policyIds", "skillKeys"})
        fields = {k: _str(body, k, non_blank=k in ("displayName", "ownerId"))
                  for k in ("displayName", "ownerId", "machineType", "runtimeProfile")}
        ref = canonical_identity_ref(body.get("identityRef"))
        lists = {k: _str_list(body, k) or [] for k in ("capabilities", "policyIds", "skillKeys")}
        labels = _str_map(body, "labels") or {}
        proof = self.verify_proof(body.get("identityProof"), ref)
        for m in self.machines.values():
            if m["identityRef"] == ref and m["status"] != "archived":
                raise ApiError(409, "MACHINE_IDENTITY_EXISTS", f"{ref} is already registered",
                               {"identityRef": ref, "machineId": m["id"]})
        self.challenges[proof["challengeId"]]["_used"] = True
        now = self.iso()
        m = {"id": "mach_" + secrets.token_hex(8), **fields, "status": "draft", **lists, "labels": labels,
             "createdAt": now, "updatedAt": now, "identityRef": ref, "identityProof": proof}
        self.machines[m["id"]] = m
        return 201, {"item": m}

    def update_machine(self, mid: str, body: dict) -> tuple[int, dict]:
        m = self.machine(mid)
        _only(body, {"displayName", "status", "ownerId", "identityRef", "machineType", "runtimeProfile",
                     "capabilities", "labels", "policyIds", "skillKeys", "identityProof"})
        update: dict[str, Any] = {}
        for k in ("displayName", "ownerId", "machineType", "runtimeProfile"):
            if k in body:
                update[k] = _str(body, k, non_blank=k in ("displayName", "ownerId"))
        for k in ("capabilities", "policyIds", "skillKeys"):
            if k in body:
                update[k] = _str_list(body, k) or []
        if "labels" in body:
            update["labels"] = _str_map(body, "labels") or {}
        if "status" in body:
            if body["status"] not in MACHINE_STATUSES:
                raise validation("status", f"must be one of {', '.join(MACHINE_STATUSES)}")
            update["status"] = body["status"]
        if "identityRef" in body and canonical_identity_ref(body["identityRef"]) != m["identityRef"]:
            raise ApiError(409, "MACHINE_IDENTITY_IMMUTABLE", "identityRef cannot change", {"field": "identityRef"})
        if (self.activation_needs_fresh_proof and body.get("status") == "active"
                and body.get("identityProof") is None):
            raise ApiError(400, "MACHINE_IDENTITY_PROOF_REQUIRED", "activation needs a fresh identityProof",
                           {"field": "identityProof"})
        if body.get("identityProof") is not None:
            update["identityProof"] = self.verify_proof(body["identityProof"], m["identityRef"])
            self.challenges[update["identityProof"]["challengeId"]]["_used"] = True
        m.update(update)
        m["updatedAt"] = self.iso()
        return 200, {"item": m}

    def list_page(self, items: list[dict], query: dict[str, list[str]]) -> tuple[int, dict]:
        limit = LIST_DEFAULT_LIMIT
        if "limit" in query:
            raw = query["limit"][-1]
            if not _DECIMAL.match(raw) or not 1 <= int(raw) <= LIST_MAX_LIMIT:
                raise validation("limit", f"must be an integer between 1 and {LIST_MAX_LIMIT}")
            limit = int(raw)
        start = 0
        if "cursor" in query:
            raw = query["cursor"][-1]
            if not raw.startswith("c") or not _DECIMAL.match(raw[1:]) or int(raw[1:]) > len(items):
                raise validation("cursor", "is not a cursor this server issued")
            start = int(raw[1:])
        page = items[start:start + limit]
        nxt = f"c{start + limit}" if start + limit < len(items) else None
        return 200, {"items": page, "nextCursor": nxt}

    # ---- machine agents -----------------------------------------------------------------------
    def public_agent(self, a: dict) -> dict:
        return {k: v for k, v in a.items() if not k.startswith("_")}

    def enroll(self, mid: str, body: dict) -> tuple[int, dict]:
        m = self.machine(mid)
        _only(body, {"label", "allowedProviderKeys"})
        label = _str(body, "label", required=False)
        keys = _str_list(body, "allowedProviderKeys") or []
        if m["status"] != "active":
            raise ApiError(409, "MACHINE_NOT_ACTIVE", f"machine {mid} is {m['status']}, not active",
                           {"machineId": mid, "status": m["status"]})
        now = self.iso()
        a = {"id": "agt_" + secrets.token_hex(8), "machineId": mid, "label": label or "machine-agent",
             "status": "provisioned", "allowedProviderKeys": keys, "createdAt": now, "updatedAt": now,
             "lastSeenAt": None}
        token = "mat_" + secrets.token_urlsafe(24)
        self.agents[a["id"]] = a
        self.agent_tokens[a["id"]] = token
        item = dict(a)
        if self.token_field in ("provisioningToken", "both"):
            item["provisioningToken"] = token
        if self.token_field in ("agentToken", "both"):
            item["agentToken"] = token
        return 201, {"item": item}

    def heartbeat(self, body: dict) -> tuple[int, dict]:
        _only(body, {"machineId", "agentId", "agentToken", "endpoints", "leaseTtlSeconds"})
        token = body.get("agentToken")
        if not isinstance(token, str) or not token:
            raise ApiError(401, "AGENT_AUTH_REQUIRED", "agentToken is required", {"field": "agentToken"})
        mid, aid = _str(body, "machineId", non_blank=True), _str(body, "agentId", non_blank=True)
        a = self.agents.get(aid)
        expected = self.agent_tokens.get(aid, "")
        if (a is None or a["machineId"] != mid or a["status"] == "revoked"
                or not secrets.compare_digest(token.encode(), expected.encode())):
            raise ApiError(401, "AGENT_AUTH_INVALID", "agent credentials are not valid")
        eps = body.get("endpoints")
        if not isinstance(eps, list) or not eps:
            raise validation("endpoints", "must be a non-empty array")
        ttl = body.get("leaseTtlSeconds")
        if ttl is None:
            ttl = self.lease_ttl
        elif not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 86400:
            raise validation("leaseTtlSeconds", "must be an integer between 1 and 86400 or null")
        now = self.now()
        results = []
        for i, raw in enumerate(eps):
            if not isinstance(raw, dict):
                raise validation(f"endpoints[{i}]", "must be an object")
            ep: dict[str, Any] = {}
            for key, val in raw.items():
                camel = key if key in _ENDPOINT_KEYS else next(
                    (c for c, s in _ENDPOINT_KEYS.items() if s == key), None)
                if camel is None:
                    raise validation(f"endpoints[{i}].{key}", "unknown field")
                ep[camel] = val
            pk = ep.get("providerKey")
            url = ep.get("endpointBaseUrl")
            if not isinstance(pk, str) or not pk:
                raise validation(f"endpoints[{i}].providerKey", "must be a non-empty string")
            if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url.strip()):
                raise validation(f"endpoints[{i}].endpointBaseUrl", "must be an http(s) URL with a host")
            if a["allowedProviderKeys"] and pk not in a["allowedProviderKeys"]:
                raise ApiError(403, "AGENT_POLICY_DENIED", f"provider {pk} not allowed for this agent",
                               {"field": f"endpoints[{i}].providerKey"})
            results.append({"providerKey": pk, "endpointBaseUrl": url, "status": "active",
                            "leaseExpiresAt": self.iso(now + ttl), "healthError": None})
        a["status"], a["lastSeenAt"], a["updatedAt"] = "active", self.iso(now), self.iso(now)
        a["_heartbeats"] = a.get("_heartbeats", 0) + 1
        return 200, {"item": {"machineId": mid, "agentId": aid, "leaseTtlSeconds": ttl,
                              "observedAt": self.iso(now), "endpoints": results}}

    # ---- stream selling: rails, transports, delivery capabilities, listings (§2.2) -----------------
    PAYMENT_RAILS = [
        {"type": "transfer", "chains": ["eip155:3338", "eip155:8453"], "tokens": ["USDC", "PEAQ"],
         "verification": "destination-chain-finality"},
        {"type": "x402", "chains": ["base"], "tokens": ["USDC"], "requiresProof": True},
    ]
    DELIVERY_TRANSPORTS = [
        {"mode": "p2p", "transportId": "peaqos-webrtc", "version": "1", "features": ["chunks"],
         "signaling": "peaqos-socket", "protocols": ["webrtc"], "encoding": "binary", "handoff": "prepare-access"},
        {"mode": "storage", "provider": "s3", "features": ["storage-ref"]},
        {"mode": "storage", "provider": "walrus", "features": ["storage-ref"]},
    ]

    def live_agent_of(self, mid: str, aid: Any, field: str = "agentId") -> dict:
        if not isinstance(aid, str) or not aid.strip():
            raise validation(field, "must be a non-empty string")
        a = self.agents.get(aid)
        if a is None or a["machineId"] != mid or a["status"] == "revoked":
            raise ApiError(404, "NOT_FOUND", f"agent {aid} of machine {mid} not found", {"field": field})
        return a

    @staticmethod
    def _capability(c: Any, at: str, extra: set[str] = frozenset()) -> dict:
        if not isinstance(c, dict):
            raise validation(at, "must be an object")
        for k in c:
            if k not in {"transportId", "version", "features", "protocols", "encoding"} | extra:
                raise validation(f"{at}.{k}", "unknown field")
        for k in ("transportId", "version"):
            if not isinstance(c.get(k), str) or not c[k].strip():
                raise validation(f"{at}.{k}", "must be a non-empty string")
        if not isinstance(c.get("features"), list) or not all(isinstance(x, str) for x in c["features"]):
            raise validation(f"{at}.features", "must be an array of strings")
        if c.get("protocols") is not None:
            _str_list(c, "protocols")
        if c.get("encoding") is not None:
            _str(c, "encoding")
        return dict(c)

    def put_delivery_capabilities(self, mid: str, body: dict) -> tuple[int, dict]:
        self.machine(mid)
        _only(body, {"agentId", "capabilities", "resourceTypes", "expiresAt"})
        self.live_agent_of(mid, body.get("agentId"))
        caps = body.get("capabilities")
        if not isinstance(caps, list):
            raise validation("capabilities", "must be an array")
        caps = [self._capability(c, f"capabilities[{i}]") for i, c in enumerate(caps)]
        types = _str_list(body, "resourceTypes") or ["stream.bundle"]
        expires = _str(body, "expiresAt", required=False) or self.iso(self.now() + 300)
        item = {"machineId": mid, "agentId": body["agentId"], "capabilities": caps, "resourceTypes": types,
                "status": "active", "updatedAt": self.iso(), "expiresAt": expires}
        self.delivery_capabilities[mid] = item
        return 200, {"item": item}

    @staticmethod
    def _rail(r: Any, at: str) -> dict:
        if not isinstance(r, dict):
            raise validation(at, "must be an object")
        if r.get("type") == "transfer":
            _only(r, {"type", "destination"})
            d = r.get("destination")
            if not isinstance(d, dict):
                raise validation(f"{at}.destination", "must be an object")
            for k in d:
                if k not in ("chain", "token", "payTo", "tokenAddress"):
                    raise validation(f"{at}.destination.{k}", "unknown field")
            for k in ("chain", "token", "payTo"):
                if not isinstance(d.get(k), str) or not d[k].strip():
                    raise validation(f"{at}.destination.{k}", "must be a non-empty string")
        elif r.get("type") == "x402":
            for k in r:
                if k not in ("type", "chain", "token", "facilitatorUrl"):
                    raise validation(f"{at}.{k}", "unknown field")
            for k in ("chain", "token"):
                if not isinstance(r.get(k), str) or not r[k].strip():
                    raise validation(f"{at}.{k}", "must be a non-empty string")
        else:
            raise validation(f"{at}.type", "must be transfer or x402")
        return dict(r)

    def update_listing(self, mid: str, lid: str, body: dict) -> tuple[int, dict]:
        """Additive PATCH (SDK); a listing this server does not know is created (UNVERIFIED: the SDK
        has no create call, so how a listing first comes to be is not observable)."""
        self.machine(mid)
        _only(body, {"resource", "paymentRails", "deliveryOptions", "price"})
        update: dict[str, Any] = {}
        if "resource" in body:
            res = body["resource"]
            if not isinstance(res, dict):
                raise validation("resource", "must be an object")
            for k in res:
                if k not in ("type", "mode", "supportsLive"):
                    raise validation(f"resource.{k}", "unknown field")
            for k in ("type", "mode"):
                if not isinstance(res.get(k), str) or not res[k]:
                    raise validation(f"resource.{k}", "must be a non-empty string")
            update["resource"] = dict(res)
        if "paymentRails" in body:
            rails = body["paymentRails"]
            if not isinstance(rails, list):
                raise validation("paymentRails", "must be an array")
            update["paymentRails"] = [self._rail(r, f"paymentRails[{i}]") for i, r in enumerate(rails)]
        if "deliveryOptions" in body:
            opts = body["deliveryOptions"]
            if not isinstance(opts, list):
                raise validation("deliveryOptions", "must be an array")
            update["deliveryOptions"] = [self._capability(o, f"deliveryOptions[{i}]", {"params"})
                                         for i, o in enumerate(opts)]
        if "price" in body:  # not in the SDK's PATCH (see test/market/README.md)
            price = body["price"]
            if not isinstance(price, dict) or set(price) != {"amount", "currency"}:
                raise validation("price", "must be {amount, currency}")
            if not isinstance(price["amount"], str) or not re.match(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$", price["amount"]):
                raise validation("price.amount", "must be a decimal string")
            update["price"] = dict(price)
        key = f"{mid}/{lid}"
        now = self.iso()
        listing = self.listings.get(key) or {"id": lid, "machineId": mid, "status": "active", "createdAt": now}
        listing.update(update)
        listing["updatedAt"] = now
        self.listings[key] = listing
        return 200, {"item": listing}

    # ---- runtime endpoints (§2.1 #17-20, §3.6) -------------------------------------------------------
    RUNTIME_ENUMS = {"authType": ("none", "api-key", "bearer"), "networkScope": ("loopback", "lan", "vpn", "public"),
                     "status": ("active", "degraded", "unreachable")}

    def put_runtime_endpoint(self, mid: str, key: str, body: dict) -> tuple[int, dict]:
        self.machine(mid)
        _only(body, {"endpointBaseUrl", "label", "authType", "authToken", "modelAlias", "networkScope", "probePath",
                     "status"})
        url = (_str(body, "endpointBaseUrl", non_blank=True) or "").strip()
        scheme, _, rest = url.partition("://")
        if scheme not in ("http", "https") or not rest or rest.startswith("/"):
            raise validation("endpointBaseUrl", "must be an http(s) URL with a host")
        for k, allowed in self.RUNTIME_ENUMS.items():
            if k in body and body[k] not in allowed:
                raise validation(k, f"must be one of {', '.join(allowed)}")
        now = self.iso()
        ep = self.runtime_endpoints.get(f"{mid}/{key}") or {
            "id": "rte_" + secrets.token_hex(6), "machineId": mid, "providerKey": key, "source": "manual",
            "createdAt": now}
        ep.update({"label": body.get("label") or key, "endpointBaseUrl": url,
                   "authType": body.get("authType", "none"), "hasAuthToken": bool(body.get("authToken")),
                   "networkScope": body.get("networkScope", "loopback"), "status": body.get("status", "active"),
                   "probePath": body.get("probePath"), "modelAlias": body.get("modelAlias"), "updatedAt": now})
        ep["_upserts"] = ep.get("_upserts", 0) + 1
        self.runtime_endpoints[f"{mid}/{key}"] = ep
        return 200, {"item": self.public_purchase(ep)}

    def route_runtime(self, method: str, parts: list[str], query: dict, body: Any) -> tuple[int, Any] | None:
        if len(parts) < 3 or parts[0] != "machines" or parts[2] != "runtime-endpoints":
            return None
        mid = parts[1]
        if len(parts) == 3 and method == "GET":
            self.machine(mid)
            items = [self.public_purchase(e) for k, e in self.runtime_endpoints.items() if k.startswith(mid + "/")]
            return self.list_page(items, query)
        if len(parts) != 4:
            return None
        key = f"{mid}/{parts[3]}"
        if method == "PUT":
            return self.put_runtime_endpoint(mid, parts[3], self.need_body(body))
        if key not in self.runtime_endpoints:
            raise ApiError(404, "NOT_FOUND", f"runtime endpoint {parts[3]} not found")
        if method == "GET":
            return 200, {"item": self.public_purchase(self.runtime_endpoints[key])}
        if method == "DELETE":
            del self.runtime_endpoints[key]
            return 204, None
        return None

    # ---- stream purchases, seller side (§2.2) -------------------------------------------------------
    PURCHASE_EVENT_TYPES = ("delivery.started", "delivery.completed", "delivery.failed", "buyer.connected",
                            "seller.ready", "seller.offline")

    def public_purchase(self, p: dict) -> dict:
        return {k: v for k, v in p.items() if not k.startswith("_")}

    def purchase(self, pid: str) -> dict:
        p = self.purchases.get(pid)
        if p is None:
            raise ApiError(404, "NOT_FOUND", f"purchase {pid} not found", {"purchaseId": pid})
        return p

    def mock_purchase(self, body: dict) -> dict:
        """Test control standing in for the buyer's POST /purchases (which needs agent pairing)."""
        key = f"{body['machineId']}/{body['listingId']}"
        if key not in self.listings:
            raise ApiError(404, "NOT_FOUND", f"listing {key} not found")
        now = self.iso()
        pid = "pur_" + secrets.token_hex(8)
        resource: dict[str, Any] = {"type": "stream.listing", "listingId": body["listingId"], "mode": "storage"}
        if body.get("selection") is not None:
            resource["selection"] = body["selection"]
        p = {"id": pid, "status": "pending_payment", "resource": resource,
             "buyer": {"id": body.get("buyerId", "buyer-1"),
                       "publicKey": {"type": "x25519", "publicKeyHex": body["buyerPublicKeyHex"]}},
             "payment": {"status": "pending"}, "delivery": {"status": "blocked"}, "createdAt": now, "updatedAt": now,
             "_machineId": body["machineId"], "_events": []}
        self.purchases[pid] = p
        if body.get("notify", True):
            self.notify(body["machineId"], "purchase.created", {"purchaseId": pid})
        return self.public_purchase(p)

    def notify(self, mid: str, kind: str, payload: dict) -> None:
        msg = {"type": kind, "payload": payload, "createdAt": self.iso()}
        for m, q in self.sockets:
            if m == mid:
                q.put(msg)

    def mock_pay(self, pid: str, body: dict) -> dict:
        p = self.purchase(pid)
        ref = body.get("reference") or "0x" + secrets.token_hex(32)  # a real transaction, for benchmarks
        p["payment"] = {"status": "verified", "rail": "transfer", "reference": ref, "recordedAt": self.iso()}
        p["_paidAt"] = time.time()
        p["delivery"] = {"status": body.get("deliveryStatus", "releasable")}
        p["status"], p["updatedAt"] = "paid", self.iso()
        if body.get("notify", True):
            self.notify(p["_machineId"], "purchase.payment_proof.recorded", {
                "purchaseId": pid, "rail": "transfer", "reference": p["payment"]["reference"],
                "paymentStatus": "verified", "deliveryStatus": p["delivery"]["status"]})
        return self.public_purchase(p)

    def prepare_access(self, pid: str, body: dict) -> tuple[int, dict]:
        _only(body, {"machineId", "agentId", "agentToken", "items", "delivery"})
        p = self.purchase(pid)
        mid = _str(body, "machineId", non_blank=True)
        aid = _str(body, "agentId", non_blank=True)
        token = body.get("agentToken")
        a = self.agents.get(aid)
        if (not isinstance(token, str) or a is None or a["machineId"] != mid or a["status"] == "revoked"
                or not secrets.compare_digest(token.encode(), self.agent_tokens.get(aid, "").encode())):
            raise ApiError(401, "AGENT_AUTH_INVALID", "agent credentials are not valid")
        if p["_machineId"] != mid:
            raise ApiError(403, "AGENT_POLICY_DENIED", "the purchase is not for this machine")
        if p["payment"]["status"] != "verified" or p["delivery"]["status"] == "blocked":
            raise ApiError(409, "PAYMENT_REQUIRED", "the purchase is not paid", {"purchaseId": pid})
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise validation("items", "must be a non-empty array")
        for i, it in enumerate(items):
            if not isinstance(it, dict):
                raise validation(f"items[{i}]", "must be an object")
            _only(it, {"schemaVersion", "chunkId", "buyer"})
            if it.get("schemaVersion") != "peaq.stream.buyer-access.v1":
                raise validation(f"items[{i}].schemaVersion", "must be peaq.stream.buyer-access.v1")
            b = it.get("buyer")
            if not isinstance(b, dict) or set(b) != {"recipientId", "recipientType", "algorithm", "publicKeyHex",
                                                     "wrappedKeyHex"}:
                raise validation(f"items[{i}].buyer", "must be {recipientId, recipientType, algorithm, publicKeyHex, "
                                 "wrappedKeyHex}")
            if b["publicKeyHex"].lower() != p["buyer"]["publicKey"]["publicKeyHex"].lower():
                raise validation(f"items[{i}].buyer.publicKeyHex", "is not the buyer's key")
        d = body.get("delivery")
        if not isinstance(d, dict) or not isinstance(d.get("connect"), dict):
            raise validation("delivery", "must be {mode, transportId, connect{type, url, expiresAt}, channelId?}")
        _only(d, {"mode", "transportId", "connect", "channelId"})
        _only(d["connect"], {"type", "url", "expiresAt"})
        for k in ("mode", "transportId"):
            _str(d, k, non_blank=True)
        listing = self.listings.get(f"{mid}/{p['resource']['listingId']}", {})
        price = listing.get("price", {"amount": "0", "currency": "USDC"})
        now = self.iso()
        session = p.get("_session") or {"id": "dls_" + secrets.token_hex(8), "createdAt": now}
        chunk_ids = [it["chunkId"] for it in items]
        session.update({"machineId": mid, "orderId": pid, "buyerId": p["buyer"]["id"], "chunkIds": chunk_ids,
                        "delivery": {"mode": d["mode"], "transportId": d["transportId"],
                                     "signaling": {"type": "peaqos-socket", "channelId": d.get("channelId", "")},
                                     "connect": d["connect"]},
                        "status": "ready", "updatedAt": now})
        p["_session"], p["_access"] = session, items
        p["_prepareCount"] = p.get("_prepareCount", 0) + 1
        p.setdefault("_preparedAt", time.time())
        p["status"], p["updatedAt"] = "access_prepared", now
        item = {"id": pid, "listingId": p["resource"]["listingId"], "machineId": mid, "buyerId": p["buyer"]["id"],
                "chunkIds": chunk_ids, "amount": price["amount"], "currency": price["currency"],
                "status": "access_prepared",
                "payment": {"status": "verified", "reference": p["payment"].get("reference"),
                            "recordedAt": p["payment"].get("recordedAt")},
                "accessGrantIds": [f"grt_{i}" for i in range(len(items))], "deliverySessionId": session["id"]}
        return 200, {"item": item, "access": items, "deliverySession": session}

    def purchase_event(self, pid: str, body: dict) -> tuple[int, dict]:
        _only(body, {"actor", "type", "payload"})
        p = self.purchase(pid)
        if body.get("type") not in self.PURCHASE_EVENT_TYPES:
            raise validation("type", f"must be one of {', '.join(self.PURCHASE_EVENT_TYPES)}")
        actor = body.get("actor")
        if not isinstance(actor, dict):
            raise validation("actor", "must be an object")
        _only(actor, {"type", "id", "machineId", "agentId"})
        ev = {"id": "pev_" + secrets.token_hex(6), "purchaseId": pid, "type": body["type"], "createdAt": self.iso()}
        p["_events"].append({**ev, "actor": actor, "payload": body.get("payload")})
        payload = body.get("payload")
        if body["type"] == "seller.ready" and isinstance(payload, dict) and isinstance(payload.get("amount"), str):
            p["_quote"] = {"amount": payload["amount"], "currency": payload.get("currency"),
                           "chunkIds": payload.get("chunkIds")}
        if body["type"] == "delivery.completed":
            p["delivery"]["status"], p["status"] = "completed", "completed"
            p.setdefault("_completedAt", time.time())
        return 201, {"item": ev}

    # ---- routing ------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict, headers, body: Any) -> tuple[int, Any]:
        if not path.startswith(API + "/"):
            raise ApiError(404, "NOT_FOUND", f"no route {method} {path}")
        parts = path[len(API) + 1:].split("/")
        if method == "GET" and parts == ["health"]:
            return 200, {"ok": True}
        if method == "GET" and parts == ["readiness"]:
            return 200, {"status": "ready", "checks": [{"name": "store", "status": "pass", "message": None}]}
        if method == "POST" and parts == ["machine-agents", "heartbeat"]:  # auth: token in body only
            return self.heartbeat(self.need_body(body))
        buyer = self.route_buyer(method, parts, headers, body)  # auth: x-agent-pairing-token
        if buyer is not None:
            return buyer
        market = self.route_market(method, parts, query, headers, body)  # auth: per route (P, A or either)
        if market is not None:
            return market
        self.require_platform(headers)
        pairing = self.route_pairing(method, parts, body)
        if pairing is not None:
            return pairing
        runtime = self.route_runtime(method, parts, query, body)
        if runtime is not None:
            return runtime
        if method == "POST" and parts == ["machine-identity", "challenges"]:
            return self.create_challenge(self.need_body(body))
        if parts == ["machines"]:
            if method == "GET":
                return self.list_page(list(self.machines.values()), query)
            if method == "POST":
                return self.create_machine(self.need_body(body))
        if len(parts) == 2 and parts[0] == "machines":
            if method == "GET":
                return 200, {"item": self.machine(parts[1])}
            if method == "PATCH":
                return self.update_machine(parts[1], self.need_body(body))
            if method == "DELETE":
                m = self.machine(parts[1])
                m["status"], m["updatedAt"] = "archived", self.iso()
                return 204, None
        if len(parts) == 2 and parts[0] == "purchases" and method == "GET":
            return 200, {"item": self.public_purchase(self.purchase(parts[1]))}
        if len(parts) == 3 and parts[0] == "purchases" and parts[2] == "events" and method == "POST":
            return self.purchase_event(parts[1], self.need_body(body))
        if len(parts) == 4 and parts[:2] == ["stream", "orders"] and parts[3] == "prepare-access" and method == "POST":
            return self.prepare_access(parts[2], self.need_body(body))
        if method == "GET" and parts == ["payment-rails"]:
            return 200, {"items": self.PAYMENT_RAILS, "nextCursor": None}
        if method == "GET" and parts == ["delivery-transports"]:
            return 200, {"items": self.DELIVERY_TRANSPORTS, "nextCursor": None}
        if len(parts) == 3 and parts[0] == "machines" and parts[2] == "delivery-capabilities" and method == "PUT":
            return self.put_delivery_capabilities(parts[1], self.need_body(body))
        if (len(parts) == 5 and parts[0] == "machines" and parts[2:4] == ["stream", "listings"]
                and method == "PATCH"):
            return self.update_listing(parts[1], parts[4], self.need_body(body))
        if len(parts) >= 3 and parts[0] == "machines" and parts[2] == "agents":
            mid = parts[1]
            if len(parts) == 3 and method == "GET":
                self.machine(mid)
                return 200, {"items": [self.public_agent(a) for a in self.agents.values() if a["machineId"] == mid],
                             "nextCursor": None}
            if parts[3:] == ["enrollment"] and method == "POST":
                return self.enroll(mid, self.need_body(body))
            if len(parts) == 4 and method == "DELETE":
                a = self.agents.get(parts[3])
                if a is None or a["machineId"] != mid:
                    raise ApiError(404, "NOT_FOUND", f"agent {parts[3]} not found")
                a["status"], a["updatedAt"] = "revoked", self.iso()
                return 204, None
        raise ApiError(404, "NOT_FOUND", f"no route {method} {path}")

    @staticmethod
    def need_body(body: Any) -> dict:
        if not isinstance(body, dict):
            raise validation("body", "must be a JSON object")
        return body

    # ---- test controls ------------------------------------------------------------------------
    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        name = path[len("/__mock__/"):]
        if method == "GET" and name == "state":
            return 200, {"machines": list(self.machines.values()),
                         "agents": [{**self.public_agent(a), "heartbeats": a.get("_heartbeats", 0)}
                                    for a in self.agents.values()],
                         "challenges": len(self.challenges), "requests": self.requests,
                         "listings": list(self.listings.values()),
                         "runtimeEndpoints": [{**self.public_purchase(e), "upserts": e.get("_upserts", 0)}
                                              for e in self.runtime_endpoints.values()],
                         "deliveryCapabilities": list(self.delivery_capabilities.values()),
                         "sockets": [m for m, _ in self.sockets], "socketConnects": self.socket_connects,
                         "purchases": [{**self.public_purchase(p), "access": p.get("_access"),
                                        "events": p.get("_events", []), "prepareCount": p.get("_prepareCount", 0),
                                        "quote": p.get("_quote"), "intent": p.get("_intent"),
                                        "timing": {k: p.get(f"_{k}At") for k in ("paid", "prepared", "completed")}}
                                       for p in self.purchases.values()],
                         "now": self.iso()}
        if name.startswith("market/"):
            return self.market_control(method, name[len("market/"):], body)
        body = body if isinstance(body, dict) else {}
        if method == "POST" and name == "controllers":
            self.controllers[body.get("identityRef", "*")] = list(body["addresses"])
        elif method == "POST" and name == "purchases":
            return 200, {"item": self.mock_purchase(body)}
        elif method == "POST" and name.startswith("purchases/") and name.endswith("/pay"):
            return 200, {"item": self.mock_pay(name.split("/")[1], body)}
        elif method == "POST" and name == "sockets/drop":
            for _, q in self.sockets:
                q.put(None)
        elif method == "POST" and name == "faults":
            self.faults.append({"times": 1, **body})
        elif method == "POST" and name == "clock":
            self.clock_offset += float(body.get("advanceSeconds", 0))
        elif method == "POST" and name == "config":
            self.challenge_ttl = float(body.get("challengeTtlSeconds", self.challenge_ttl))
            self.lease_ttl = int(body.get("leaseTtlSeconds", self.lease_ttl))
            self.token_field = body.get("enrollTokenField", self.token_field)
            self.activation_needs_fresh_proof = bool(
                body.get("activationNeedsFreshProof", self.activation_needs_fresh_proof))
        else:
            return 404, {"error": {"code": "NOT_FOUND", "message": f"no control {method} {name}"}}
        return 200, {"ok": True}

    def take_fault(self, method: str, path: str) -> dict | None:
        for f in self.faults:
            if f.get("method", method) == method and f.get("path", path) == path and f["times"] > 0:
                f["times"] -= 1
                return f
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "peaqos-orchestrator-mock/0.1"
    orch: Orchestrator  # set on the subclass made by make_server

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: tests read /__mock__/state instead
        pass

    def _send(self, status: int, payload: Any = None, raw: bytes | None = None,
              content_type: str = "application/json") -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if data:
            self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    _WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def _ws_send(self, data: bytes, opcode: int = 1) -> None:
        n = len(data)
        head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else
                                         bytes([126]) + struct.pack(">H", n) if n < 65536 else
                                         bytes([127]) + struct.pack(">Q", n))
        self.wfile.write(head + data)
        self.wfile.flush()

    def _ws_recv(self) -> tuple[int, bytes] | None:
        """One client frame (masked), or None when the peer is gone."""
        b = self.rfile.read(2)
        if len(b) < 2:
            return None
        opcode, n = b[0] & 0x0F, b[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.rfile.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if b[1] & 0x80 else b"\0\0\0\0"
        data = bytes(x ^ mask[i % 4] for i, x in enumerate(self.rfile.read(n)))
        return opcode, data

    def _control_socket(self, mid: str) -> None:
        """`GET /api/v1/machines/{m}/control-socket` as a WebSocket (§2.3): agent headers, a
        `control.connected` greeting, then the notifications of that machine; any client message
        is acknowledged."""
        orch = self.orch
        aid, token = self.headers.get("x-machine-agent-id"), self.headers.get("x-machine-agent-token")
        with orch.lock:
            orch.requests.append({"method": "GET", "path": self.path, "query": "", "body": "",
                                  "headers": {k.lower(): v for k, v in self.headers.items()}})
            a = orch.agents.get(aid or "")
            ok = (a is not None and a["machineId"] == mid and a["status"] != "revoked" and token is not None
                  and secrets.compare_digest(token.encode(), orch.agent_tokens.get(aid, "").encode()))
            down = orch.take_fault("WS", self.path)
        if not ok or down:
            self._send(401 if not ok else 503, {"error": {"code": "AGENT_AUTH_INVALID" if not ok else "UNAVAILABLE",
                                                          "message": "control socket refused"}})
            return
        key = self.headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + self._WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        out: queue.Queue = queue.Queue()
        with orch.lock:
            orch.sockets.append((mid, out))
            orch.socket_connects += 1
        self.close_connection = True
        try:
            self._ws_send(json.dumps({"type": "control.connected", "machineId": mid, "agentId": aid,
                                      "createdAt": orch.iso()}).encode())
            while True:
                try:
                    msg = out.get_nowait()
                    if msg is None:  # test control: drop the socket
                        return
                    self._ws_send(json.dumps(msg).encode())
                except queue.Empty:
                    pass
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if not readable:
                    continue
                frame = self._ws_recv()
                if frame is None or frame[0] == 8:
                    return
                if frame[0] == 9:
                    self._ws_send(frame[1], opcode=10)
                elif frame[0] == 1:
                    self._ws_send(json.dumps({"type": "control.ack", "createdAt": orch.iso()}).encode())
        except (OSError, ValueError):
            return
        finally:
            with orch.lock:
                orch.sockets = [(m, q) for m, q in orch.sockets if q is not out]

    def _handle(self) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        parts = path.split("/")
        if (self.headers.get("upgrade", "").lower() == "websocket" and len(parts) == 6
                and parts[1:4] == ["api", "v1", "machines"] and parts[5] == "control-socket"):
            self._control_socket(parts[4])
            return
        try:
            length = int(self.headers.get("content-length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._send(400, {"error": {"code": "VALIDATION_ERROR", "message": "content-length: must be a byte count",
                                       "details": {"field": "content-length"}}})
            return
        raw = self.rfile.read(length) if length else b""
        orch = self.orch
        if path.startswith("/__mock__/"):
            with orch.lock:
                try:
                    body = loads_json(raw) if raw else None
                    status, payload = orch.control(self.command, path, body)
                    payload = json.loads(json.dumps(payload))  # a snapshot, taken under the lock
                    if self.command != "GET":
                        orch.save()
                except ApiError as e:
                    status, payload = e.status, {"error": {"code": e.code, "message": e.message}}
                except (ValueError, KeyError, TypeError, RecursionError) as e:
                    status, payload = 400, {"error": {"code": "VALIDATION_ERROR", "message": str(e)}}
            self._send(status, payload)
            return
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        market = path.startswith(API + "/market/")  # market_orders.py: own request log and faults
        with orch.lock:
            orch.requests.append({"method": self.command, "path": path, "query": split.query,
                                  "headers": hdrs, "body": raw.decode("utf-8", "replace")})
            fault = orch.take_fault(self.command, path)
            mfault = orch.take_market_fault(self.command, path) if market and fault is None else None
            if market and fault is not None:
                orch.log_market(self.command, path, split.query, hdrs, raw, int(fault.get("status", 200)), "fault")
        if mfault is not None and not (mfault["mode"] == "hang" and mfault["after"]):
            self._act_market_fault(mfault, path, split.query, hdrs, raw)
            return
        if fault is not None:  # acted out without the lock: a slow answer must not stall the others
            if fault.get("delaySeconds"):
                time.sleep(float(fault["delaySeconds"]))
            if fault.get("drop"):
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if "json" in fault:
                self._send(int(fault.get("status", 200)), fault["json"])
            else:
                self._send(int(fault.get("status", 200)), raw=str(fault.get("body", "")).encode(),
                           content_type=fault.get("contentType", "text/plain"))
            return
        try:
            body: Any = None
            if raw:
                if "application/json" not in hdrs.get("content-type", ""):
                    raise validation("content-type", "a request body must be application/json")
                try:
                    body = loads_json(raw)
                except (ValueError, RecursionError) as e:
                    raise validation("body", f"is not valid JSON ({e})") from None
            elif "application/json" in hdrs.get("content-type", ""):
                raise validation("body", "content-type application/json without a body")
            with orch.lock:
                try:
                    status, payload = orch.route(self.command, path, query, self.headers, body)
                finally:
                    if self.command != "GET":
                        orch.save()
                payload = json.loads(json.dumps(payload))  # a snapshot, taken under the lock
        except ApiError as e:
            err: dict[str, Any] = {"code": e.code, "message": e.message}
            if e.details is not None:
                err["details"] = e.details
            status, payload = e.status, {"error": err}
        except Exception as e:  # noqa: BLE001 - a bug here must still answer, never leave the client hanging
            status, payload = 500, {"error": {"code": "INTERNAL", "message": f"{type(e).__name__}: {e}"}}
        if market:
            with orch.lock:
                orch.log_market(self.command, path, split.query, hdrs, raw, status,
                                "hang-after" if mfault is not None else None)
        if mfault is not None:  # a hang after the work: the request took effect, its answer is lost
            time.sleep(float(mfault["seconds"]))
            self._drop()
            return
        self._send(status, payload)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _act_market_fault(self, f: dict, path: str, query: str, hdrs: dict, raw: bytes) -> None:
        """A market fault before the work: ``fail`` answers an error at once, ``hang`` waits then drops."""
        with self.orch.lock:
            self.orch.log_market(self.command, path, query, hdrs, raw,
                                 f["status"] if f["mode"] == "fail" else None, f["mode"])
        if f["mode"] == "fail":
            self._send(int(f["status"]), {"error": {"code": f["code"], "message": f["message"]}})
            return
        time.sleep(float(f["seconds"]))
        self._drop()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


def make_server(orch: Orchestrator, port: int = 0) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"orch": orch})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def _controller_arg(text: str) -> tuple[str, str]:
    key, _, addr = text.partition("=")
    if not addr:
        raise argparse.ArgumentTypeError("expected <decimal machine id|*>=0x<address>")
    return ("*" if key == "*" else canonical_identity_ref("did:peaq:" + key)), addr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--api-key", default=DEFAULT_API_KEY)
    p.add_argument("--controller", action="append", default=[], type=_controller_arg,
                   help="<decimal machine id>=0x<controller address>, or *=0x<address> for every identity")
    p.add_argument("--challenge-ttl", type=float, default=300.0)
    p.add_argument("--lease-ttl", type=int, default=60)
    p.add_argument("--state-file", help="keep machines, agents and challenges in this JSON file across restarts")
    p.add_argument("--rpc-url", help="EVM JSON-RPC that payment proofs with verificationMode rpc are checked on")
    p.add_argument("--enroll-token-field", choices=("provisioningToken", "agentToken", "both"),
                   default="provisioningToken")
    p.add_argument("--market-services", metavar="FILE",
                   help="a JSON array of market services to seed at start (each as POST /__mock__/market/services)")
    p.add_argument("--quote-ttl", type=float, default=300.0, help="seconds a market search quote stays valid")
    args = p.parse_args(argv)
    if Account is None:
        print("orchestrator: eth_account is missing; it comes with `pip install peaq-os-sdk==0.12.1`",
              file=sys.stderr)
        return 2
    controllers: dict[str, list[str]] = {}
    for ref, addr in args.controller:
        controllers.setdefault(ref, []).append(addr)
    orch = Orchestrator(args.api_key, controllers, args.challenge_ttl, args.lease_ttl, args.enroll_token_field)
    orch.rpc_url = args.rpc_url
    orch.quote_ttl = args.quote_ttl
    if args.state_file:
        orch.load(args.state_file)
    if args.market_services:
        try:
            with open(args.market_services, encoding="utf-8") as f:
                seeds = json.load(f)
            if not isinstance(seeds, list):
                raise ValueError("expected a JSON array of services")
            for i, seed in enumerate(seeds):
                try:
                    orch.seed_service(seed)
                except ApiError as e:
                    raise ValueError(f"service [{i}]: {e.message}") from None
        except (OSError, ValueError) as e:
            print(f"orchestrator: --market-services {args.market_services}: {e}", file=sys.stderr)
            return 2
    server = make_server(orch, args.port)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # SIGINT too, explicitly: a background job of a non-interactive shell (scripts/demo) starts with
    # SIGINT ignored, so Python's KeyboardInterrupt would never come
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(json.dumps({"url": url, "apiBase": url + API, "apiKey": args.api_key, "pid": os.getpid()}),
          flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
