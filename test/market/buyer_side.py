"""The buyer's half of the local orchestrator (mixed into ``Orchestrator``): agent pairing (auth mode A,
``x-agent-pairing-token``), and the buyer's stream purchase calls — ``POST /purchases``, payment intent,
payment proof (``verificationMode: "rpc"`` checks the ERC-20 ``Transfer`` log, or the native value, on the
chain given with ``--rpc-url``), and ``GET /purchases/{id}/delivery``.

Shapes follow ``peaq-os-sdk`` 0.12.1 (``agent_pairings.py``, ``purchases.py``, ``types/agent_pairing.py``,
``types/purchases.py``; ORCHESTRATION.md §2.1 #12–14, §2.2, §3.5, §3.12). Server-side choices the SDK does
not pin down (UNVERIFIED against the real orchestrator): the pairing challenge message text, the session
lifetime (1 h), the quote — the amount due is what the seller quoted in its ``seller.ready`` event
(``payload{chunkIds, amount, currency}``), and a payment intent before the quote is refused with 409
``PURCHASE_NOT_QUOTED`` —, the HTTP statuses of the payment errors (409 ``PAYMENT_NOT_MINED``, 400 the others),
token decimals (USDC/USDT 6, a native transfer 18), and ``verificationMode: "recorded"`` being taken on the
buyer's word (so a seller's own check is what stands between a fake proof and the data).
"""
from __future__ import annotations

import json
import secrets
import time
import urllib.request
from typing import Any

try:
    from eth_account import Account
    from eth_account.messages import encode_defunct
except ImportError:  # pragma: no cover - reported by orchestrator.main
    Account = None  # type: ignore[assignment]

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
SESSION_SECONDS = 3600
_POLICY_LISTS = ("allowedSkillKeys", "deniedSkillKeys", "allowedServiceIds", "deniedServiceIds")
_POLICY_NUMBERS = ("perTransactionLimit", "dailySpendLimit")


def _decimals(token: str) -> int:
    return 6 if token.upper() in ("USDC", "USDT") else 18


def _raw(amount: str, decimals: int) -> int:
    whole, _, frac = amount.partition(".")
    if len(frac) > decimals:
        raise ValueError(f"{amount} is finer than {decimals} decimals")
    return int(whole) * 10**decimals + int((frac or "0").ljust(decimals, "0"))


class BuyerSide:
    """State: ``pairings`` (id -> pairing), ``pairing_tokens`` (token -> pairing id),
    ``pairing_challenges`` (id -> challenge); ``rpc_url`` for payment proofs."""

    rpc_url: str | None = None

    # ---- agent pairing (§2.1 #12-14) ---------------------------------------------------------------
    def pairing_challenge(self, mid: str, body: dict) -> tuple[int, dict]:
        from orchestrator import ApiError, _only, _str  # noqa: PLC0415 - one module at runtime
        m = self.machine(mid)
        _only(body, {"agentAddress", "agentProvider", "agentRole", "agentDid"})
        addr = _str(body, "agentAddress", non_blank=True)
        provider = _str(body, "agentProvider", non_blank=True)
        role = _str(body, "agentRole", non_blank=True)
        did = _str(body, "agentDid", required=False) or f"did:peaq:{addr}"
        if not (addr.startswith("0x") and len(addr) == 42):
            raise ApiError(400, "VALIDATION_ERROR", "agentAddress must be 0x and 40 hex digits",
                           {"field": "agentAddress"})
        cid = "apc_" + secrets.token_hex(8)
        expires = self.now() + self.challenge_ttl
        message = (f"peaqOS agent pairing challenge\nmachineId: {mid}\nagentAddress: {addr}\n"
                   f"challengeId: {cid}\nnonce: {secrets.token_hex(16)}")
        ch = {"challengeId": cid, "machineId": mid, "machineIdentityRef": m.get("identityRef") or "did:peaq:1",
              "agentAddress": addr, "agentDid": did, "agentProvider": provider, "agentRole": role,
              "message": message, "expiresAt": self.iso(expires), "verificationMethod": "eip191"}
        self.pairing_challenges[cid] = {**ch, "_expires": expires, "_used": False}
        return 201, {"item": ch}

    def _agent_proof(self, mid: str, proof: Any, addr: str | None = None) -> dict:
        from orchestrator import ApiError, _only, _str, validation  # noqa: PLC0415
        if proof is None:
            raise ApiError(400, "AGENT_PAIRING_PROOF_REQUIRED", "agentProof is required", {"field": "agentProof"})
        if not isinstance(proof, dict):
            raise validation("agentProof", "must be an object")
        _only(proof, {"challengeId", "signature"})
        cid = _str(proof, "challengeId", non_blank=True)
        sig = _str(proof, "signature", non_blank=True)
        ch = self.pairing_challenges.get(cid)
        if ch is None or ch["_used"] or ch["machineId"] != mid or (addr and ch["agentAddress"].lower() != addr.lower()):
            raise ApiError(400, "AGENT_PAIRING_PROOF_INVALID", "unknown, used or mismatched pairing challenge",
                           {"field": "agentProof.challengeId"})
        if self.now() >= ch["_expires"]:
            raise ApiError(400, "AGENT_PAIRING_PROOF_EXPIRED", "pairing challenge expired", {"challengeId": cid})
        try:
            signer = Account.recover_message(encode_defunct(text=ch["message"]), signature=sig)
        except Exception:  # noqa: BLE001 - a malformed signature is an invalid proof
            raise ApiError(400, "AGENT_PAIRING_PROOF_INVALID", "signature is not a valid EIP-191 signature",
                           {"field": "agentProof.signature"}) from None
        if signer.lower() != ch["agentAddress"].lower():
            raise ApiError(400, "AGENT_PAIRING_PROOF_INVALID", "signer is not the agent address",
                           {"field": "agentProof.signature", "signerAddress": signer})
        ch["_used"] = True
        return ch

    def _session(self, p: dict) -> str:
        token = "apt_" + secrets.token_urlsafe(24)
        for t, pid in list(self.pairing_tokens.items()):
            if pid == p["id"]:
                del self.pairing_tokens[t]  # a new session replaces the old token
        self.pairing_tokens[token] = p["id"]
        now = self.now()
        p.update({"hasAuthToken": True, "tokenLastFour": token[-4:], "sessionId": "aps_" + secrets.token_hex(6),
                  "sessionTokenId": "apk_" + secrets.token_hex(6), "sessionIssuedAt": self.iso(now),
                  "sessionExpiresAt": self.iso(now + SESSION_SECONDS), "_sessionExpires": now + SESSION_SECONDS,
                  "updatedAt": self.iso(now)})
        return token

    @staticmethod
    def _policy(raw: Any) -> dict:
        from orchestrator import validation  # noqa: PLC0415
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise validation("delegationPolicy", "must be an object")
        out: dict[str, Any] = {}
        for k in _POLICY_LISTS:
            v = raw.get(k) or []
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise validation(f"delegationPolicy.{k}", "must be an array of strings")
            out[k] = v
        for k in _POLICY_NUMBERS:
            v = raw.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise validation(f"delegationPolicy.{k}", "must be a non-negative number")
            out[k] = v
        cur = raw.get("currency")
        if cur is not None and (not isinstance(cur, str) or not cur.strip()):
            raise validation("delegationPolicy.currency", "must be a non-empty string")
        out["currency"] = cur
        return out

    def public_pairing(self, p: dict, token: str | None = None) -> dict:
        out = {k: v for k, v in p.items() if not k.startswith("_")}
        if token is not None:
            out["pairingToken"] = token
        return out

    def create_pairing(self, mid: str, body: dict) -> tuple[int, dict]:
        from orchestrator import _only, _str  # noqa: PLC0415
        self.machine(mid)
        _only(body, {"agentAddress", "agentProvider", "agentRole", "agentProof", "agentDid", "description",
                     "delegationPolicy"})
        addr = _str(body, "agentAddress", non_blank=True)
        ch = self._agent_proof(mid, body.get("agentProof"), addr)
        now = self.iso()
        p = {"id": "apr_" + secrets.token_hex(8), "machineId": mid, "agentAddress": addr,
             "agentProvider": _str(body, "agentProvider", non_blank=True),
             "agentRole": _str(body, "agentRole", non_blank=True), "status": "active", "hasAuthToken": False,
             "delegationPolicy": self._policy(body.get("delegationPolicy")), "createdAt": now, "updatedAt": now,
             "description": body.get("description"), "agentDid": body.get("agentDid") or ch["agentDid"],
             "verification": {"method": "eip191", "signerAddress": addr, "verifiedAt": now,
                              "challengeExpiresAt": ch["expiresAt"]}}
        self.pairings[p["id"]] = p
        token = self._session(p)
        return 201, {"item": self.public_pairing(p, token)}

    def pairing_session(self, mid: str, pid: str, body: dict) -> tuple[int, dict]:
        from orchestrator import ApiError, _only  # noqa: PLC0415
        p = self.pairings.get(pid)
        if p is None or p["machineId"] != mid:
            raise ApiError(404, "NOT_FOUND", f"pairing {pid} not found", {"pairingId": pid})
        _only(body, {"agentProof"})
        self._agent_proof(mid, body.get("agentProof"), p["agentAddress"])
        token = self._session(p)
        return 201, {"item": self.public_pairing(p, token)}

    def update_pairing(self, mid: str, pid: str, body: dict) -> tuple[int, dict]:
        """#15 PATCH: ``agentProvider``, ``agentRole``, ``description``, ``status``, ``delegationPolicy``. A new
        policy ends the current session (SEED: the session token carries the policy's hash), so the agent must
        open a new one (#14)."""
        from orchestrator import ApiError, _only, validation  # noqa: PLC0415
        p = self.pairings.get(pid)
        if p is None or p["machineId"] != mid:
            raise ApiError(404, "NOT_FOUND", f"pairing {pid} not found", {"pairingId": pid})
        _only(body, {"agentProvider", "agentRole", "description", "status", "delegationPolicy"})
        for k in ("agentProvider", "agentRole", "description"):
            if k in body:
                if not isinstance(body[k], str) or (k != "description" and not body[k].strip()):
                    raise validation(k, "must be a non-empty string")
                p[k] = body[k]
        if "status" in body:
            if body["status"] not in ("active", "paused", "revoked"):
                raise validation("status", "must be active, paused or revoked")
            p["status"] = body["status"]
        if "delegationPolicy" in body:
            policy = self._policy(body["delegationPolicy"])
            if policy != p["delegationPolicy"]:
                p["delegationPolicy"] = policy
                p["_sessionExpires"] = 0  # the old session's token no longer matches the policy
        p["updatedAt"] = self.iso()
        return 200, {"item": self.public_pairing(p)}

    def require_pairing(self, headers) -> dict:
        from orchestrator import ApiError  # noqa: PLC0415
        token = headers.get("x-agent-pairing-token")
        if not token:
            raise ApiError(401, "AGENT_PAIRING_REQUIRED", "x-agent-pairing-token header required")
        pid = self.pairing_tokens.get(token)
        p = self.pairings.get(pid) if pid else None
        if p is None:
            raise ApiError(401, "AUTH_INVALID", "x-agent-pairing-token is not valid")
        if p["status"] != "active":
            raise ApiError(403, "AGENT_PAIRING_INACTIVE", f"pairing {pid} is {p['status']}")
        if self.now() >= p.get("_sessionExpires", 0):
            raise ApiError(401, "AGENT_AUTH_EXPIRED", "the pairing session expired; open a new one")
        return p

    # ---- stream purchases, buyer side (§2.2) --------------------------------------------------------
    def create_purchase(self, pairing: dict, body: dict) -> tuple[int, dict]:
        from orchestrator import ApiError, _only, validation  # noqa: PLC0415
        _only(body, {"resource", "buyer", "delivery"})
        res, buyer = body.get("resource"), body.get("buyer")
        if not isinstance(res, dict) or res.get("type") != "stream.listing" or not res.get("listingId"):
            raise validation("resource", "must be {type: stream.listing, listingId, selection?}")
        if not isinstance(buyer, dict) or not isinstance(buyer.get("publicKey"), dict):
            raise validation("buyer", "must be {id, publicKey{type, publicKeyHex}}")
        pk = buyer["publicKey"]
        if pk.get("type") != "x25519" or not isinstance(pk.get("publicKeyHex"), str):
            raise validation("buyer.publicKey", "must be {type: x25519, publicKeyHex}")
        matches = [k for k in self.listings if k.split("/", 1)[1] == res["listingId"]]
        if not matches:
            raise ApiError(404, "NOT_FOUND", f"listing {res['listingId']} not found", {"listingId": res["listingId"]})
        mid = matches[0].split("/", 1)[0]
        p = self.mock_purchase({"machineId": mid, "listingId": res["listingId"], "buyerId": buyer.get("id"),
                                "buyerPublicKeyHex": pk["publicKeyHex"], "selection": res.get("selection")})
        self.purchases[p["id"]]["_pairingId"] = pairing["id"]
        return 201, {"item": p}

    def _buyer_purchase(self, pairing: dict, pid: str) -> dict:
        from orchestrator import ApiError  # noqa: PLC0415
        p = self.purchase(pid)
        if p.get("_pairingId") != pairing["id"]:
            raise ApiError(403, "AGENT_POLICY_DENIED", "the purchase is not this agent's", {"purchaseId": pid})
        return p

    def _listing_rail(self, p: dict, wanted: dict | None) -> dict:
        """The listing's transfer rail the buyer chose (by ``destination.payTo``, or the first)."""
        from orchestrator import ApiError  # noqa: PLC0415
        listing = self.listings.get(f"{p['_machineId']}/{p['resource']['listingId']}", {})
        pay_to = ((wanted or {}).get("destination") or {}).get("payTo")
        for r in listing.get("paymentRails", []):
            if r.get("type") == "transfer" and (pay_to is None or r["destination"]["payTo"].lower() == pay_to.lower()):
                return r
        raise ApiError(400, "VALIDATION_ERROR", "the listing has no such transfer rail", {"field": "rail.destination"})

    def payment_intent(self, pairing: dict, pid: str, body: dict) -> tuple[int, dict]:
        from orchestrator import ApiError, _only, validation  # noqa: PLC0415
        _only(body, {"rail", "payer"})
        p = self._buyer_purchase(pairing, pid)
        rail = body.get("rail")
        if not isinstance(rail, dict) or rail.get("type") != "transfer":
            raise validation("rail.type", "this server takes transfer payments only")
        quote = p.get("_quote")
        if quote is None:
            raise ApiError(409, "PURCHASE_NOT_QUOTED", "the seller has not quoted this purchase yet",
                           {"purchaseId": pid})
        listed = self._listing_rail(p, rail)
        d = listed["destination"]
        decimals = _decimals(d["token"])
        instructions = {"payTo": d["payTo"], "chain": d["chain"], "token": d["token"],
                        "tokenAddress": d.get("tokenAddress"), "amount": quote["amount"],
                        "rawAmount": str(_raw(quote["amount"], decimals)), "tokenDecimals": decimals}
        p["_intent"] = instructions
        item = {"purchaseId": pid, "status": "intent_created", "rail": listed,
                "amount": {"value": quote["amount"], "token": d["token"], "chain": d["chain"]},
                "instructions": instructions}
        return 201, {"item": item}

    def _rpc(self, method: str, params: list) -> Any:
        req = urllib.request.Request(self.rpc_url, data=json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            out = json.load(r)
        if "error" in out:
            raise RuntimeError(out["error"])
        return out["result"]

    def _verify_transfer(self, intent: dict, tx: str) -> int:
        """The block of ``tx`` when it pays the intent; an ApiError (PAYMENT_*) when not."""
        from orchestrator import ApiError  # noqa: PLC0415
        if not self.rpc_url:
            raise ApiError(400, "PAYMENT_RPC_REQUIRED", "this server has no RPC for verification")
        try:
            receipt = self._rpc("eth_getTransactionReceipt", [tx])
        except Exception as e:  # noqa: BLE001 - any RPC failure
            raise ApiError(502, "PAYMENT_RPC_ERROR", f"RPC: {e}") from None
        if receipt is None:
            raise ApiError(409, "PAYMENT_NOT_MINED", f"{tx} is not mined", {"transactionHash": tx})
        if receipt.get("status") != "0x1":
            raise ApiError(400, "PAYMENT_TX_FAILED", f"{tx} failed", {"transactionHash": tx})
        due, pay_to = int(intent["rawAmount"]), intent["payTo"].lower()
        token = (intent.get("tokenAddress") or "").lower()
        if token:
            for log in receipt.get("logs", []):
                t = log.get("topics", [])
                if (log.get("address", "").lower() == token and len(t) == 3 and t[0].lower() == TRANSFER_TOPIC
                        and "0x" + t[2][-40:].lower() == pay_to and int(log.get("data", "0x0"), 16) >= due):
                    return int(receipt["blockNumber"], 16)
        else:
            tx_obj = self._rpc("eth_getTransactionByHash", [tx])
            if (tx_obj.get("to") or "").lower() == pay_to and int(tx_obj.get("value", "0x0"), 16) >= due:
                return int(receipt["blockNumber"], 16)
        raise ApiError(400, "PAYMENT_TRANSFER_NOT_FOUND", f"{tx} does not pay {due} to {pay_to}",
                       {"transactionHash": tx})

    def payment_proof(self, pairing: dict, pid: str, body: dict) -> tuple[int, dict]:
        from orchestrator import ApiError, _only, validation  # noqa: PLC0415
        p = self._buyer_purchase(pairing, pid)
        if body.get("rail") != "transfer":
            raise ApiError(400, "VALIDATION_ERROR", "this server verifies transfer proofs only", {"field": "rail"})
        _only(body, {"rail", "transactionHash", "chain", "token", "payerAddress", "payeeAddress", "tokenAddress",
                     "amount", "rawAmount", "rpcUrl", "verificationMode", "bridge"})
        tx = body.get("transactionHash")
        if not isinstance(tx, str) or len(tx) != 66:
            raise validation("transactionHash", "must be 0x and 64 hex digits")
        intent = p.get("_intent")
        if intent is None:
            raise ApiError(409, "PAYMENT_REQUIRED", "create a payment intent first", {"purchaseId": pid})
        mode = body.get("verificationMode", "recorded")
        if mode not in ("rpc", "recorded"):
            raise validation("verificationMode", "must be rpc or recorded")
        block = self._verify_transfer(intent, tx) if mode == "rpc" else None
        now = self.iso()
        p["payment"] = {"status": "verified", "rail": "transfer", "reference": tx, "recordedAt": now}
        p["_paidAt"] = time.time()
        p["delivery"] = {"status": "releasable"}
        p["status"], p["updatedAt"] = "paid", now
        self.notify(p["_machineId"], "purchase.payment_proof.recorded", {
            "purchaseId": pid, "rail": "transfer", "reference": tx, "paymentStatus": "verified",
            "deliveryStatus": "releasable"})
        receipt = {"verifiedAt": now, "chain": intent["chain"], "transactionHash": tx, "verificationMode": mode,
                   "status": "verified", "blockNumber": block}
        return 200, {"item": {"purchaseId": pid, "paymentStatus": "verified", "deliveryStatus": "releasable",
                              "receipt": receipt}}

    def purchase_delivery(self, pairing: dict, pid: str) -> tuple[int, dict]:
        from orchestrator import ApiError  # noqa: PLC0415
        p = self._buyer_purchase(pairing, pid)
        s = p.get("_session")
        if s is None:
            raise ApiError(409, "STREAM_DELIVERY_NOT_READY", "the seller has not prepared access yet",
                           {"purchaseId": pid})
        d = s["delivery"]
        delivery = {"status": p["delivery"]["status"], "mode": d["mode"], "transportId": d["transportId"],
                    "sessionId": s["id"], "signaling": d["signaling"], "connect": d.get("connect")}
        return 200, {"purchaseId": pid, "delivery": delivery, "access": p.get("_access") or []}

    def route_pairing(self, method: str, parts: list[str], body: Any) -> tuple[int, Any] | None:
        """The pairing routes (platform auth, checked by the caller); ``None`` for other paths."""
        need = self.need_body
        if len(parts) == 4 and parts[0] == "machines" and parts[2:] == ["agent-pairings", "challenges"] \
                and method == "POST":
            return self.pairing_challenge(parts[1], need(body))
        if len(parts) == 3 and parts[0] == "machines" and parts[2] == "agent-pairings" and method == "POST":
            return self.create_pairing(parts[1], need(body))
        if len(parts) == 5 and parts[0] == "machines" and parts[2] == "agent-pairings" and parts[4] == "sessions" \
                and method == "POST":
            return self.pairing_session(parts[1], parts[3], need(body))
        if len(parts) == 4 and parts[0] == "machines" and parts[2] == "agent-pairings" and method == "PATCH":
            return self.update_pairing(parts[1], parts[3], need(body))
        return None

    def route_buyer(self, method: str, parts: list[str], headers, body: Any) -> tuple[int, Any] | None:
        """The buyer's purchase routes (agent-pairing auth); ``None`` for other paths."""
        need = self.need_body
        if parts == ["purchases"] and method == "POST":
            return self.create_purchase(self.require_pairing(headers), need(body))
        if len(parts) == 3 and parts[0] == "purchases":
            if parts[2] == "payment-intent" and method == "POST":
                return self.payment_intent(self.require_pairing(headers), parts[1], need(body))
            if parts[2] == "payment-proof" and method == "POST":
                return self.payment_proof(self.require_pairing(headers), parts[1], need(body))
            if parts[2] == "delivery" and method == "GET":
                return self.purchase_delivery(self.require_pairing(headers), parts[1])
        return None
