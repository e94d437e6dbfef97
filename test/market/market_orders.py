"""The buyer's Machine Markets orders (mixed into ``Orchestrator``, like ``buyer_side.py``): the service
catalog (ORCHESTRATION.md §2.1 #25-26), search and quotes (#28-29), orders (#30-32), the payment intent with
the pairing's delegation policy enforced (#33-34), execute / confirm / dispute (#35-37), and settlement: the
EVM transfer proof checked on the chain given with ``--rpc-url`` (#38), escrow lock, release, refund (#39-41).

Shapes follow ``peaq-os-sdk`` 0.12.1 (``market_services.py``, ``market_search.py``, ``market_orders.py``,
``payments.py``, ``types/market_*.py``, ``types/payment.py``; ORCHESTRATION.md §1.7, §3.7-3.12, §5); the
facts used are copied, with their source, into ``test/market/README.md``. Services exist only once a test
seeds them (``POST /__mock__/market/services``, or ``--market-services FILE`` at start).

Server-side choices the SDK does not pin down (UNVERIFIED against the real orchestrator), also listed in the
README: the HTTP statuses (403 for policy and limits, 409 for state conflicts and ``QUOTE_EXPIRED``, 400 for
proof mismatches); the order and payment status walk below; the delegation policy checked at the payment
intent (the daily sum counts every payment of the pairing created the same UTC day that is not refunded,
intents included); ``confirm`` moving a held payment to ``release_pending`` on every rail (the SDK docstring:
"when payment is required, the payment moves to release_pending"), ``release`` then ``released``;
``payment-proof`` for ``wallet`` rails and ``escrow-lock`` for ``onchain-escrow`` rails; the codes this
server adds: ``PAYMENT_ALREADY_RECORDED``, ``PAYMENT_TX_ALREADY_USED``, ``PAYMENT_STATE_INVALID``,
``UNAVAILABLE`` (faults); the payment's ``rail.metadata {amount, rawAmount, tokenDecimals}`` (exact amounts
for a client that must not pay through a float).

Order status: ``created`` (payment due) | ``ready`` (nothing due, or paid) → ``payment_pending`` (intent) →
``ready`` (held) → ``delivered`` (native, outcome completed) | ``failed`` (outcome failed) | ``handoff`` (202)
→ ``confirmed`` | ``disputed``; a refund before execution → ``cancelled``.
Payment status: ``intent_created`` → ``held`` (proof / escrow lock) → ``release_pending`` (confirm) →
``released`` (release); ``held``/``release_pending`` → ``frozen`` (dispute); ``held``/``release_pending``/
``frozen`` → ``refunded`` (refund).
"""
from __future__ import annotations

import copy
import re
import secrets
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from buyer_side import TRANSFER_TOPIC, _decimals, _raw

RAIL_TYPES = ("wallet", "onchain-escrow")
EXECUTION_MODES = {"native": "native", "handoff": "external-handoff", "external-handoff": "external-handoff"}
OUTCOME_STATUSES = ("completed", "failed")
DEFAULT_QUOTE_TTL = 300.0
SEARCH_MAX_RESULTS = 50
COUNTED_PAYMENTS = ("intent_created", "held", "release_pending", "released", "frozen")  # the daily sum
CLOSED_ORDERS = ("confirmed", "disputed", "cancelled")
SECRET_HEADERS = ("x-api-key", "x-agent-pairing-token", "authorization", "x-machine-agent-token")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
_UINT = re.compile(r"^(0|[1-9][0-9]*)$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")

SEED_FIELDS = {"id", "serviceType", "operation", "operations", "price", "currency", "paymentRequired", "railType",
               "chain", "token", "tokenAddress", "tokenDecimals", "payeeAddress", "escrowAddress", "executionMode",
               "result", "outcomeStatus", "errorMessage", "handoff", "skillKey", "providerKey", "name",
               "description", "region", "capabilities", "integrationStatus"}


# ---- errors and field checks (every message names its field) ------------------------------------------
def _err(status: int, code: str, message: str, details: dict | None = None):
    from orchestrator import ApiError  # noqa: PLC0415 - one module at runtime (see orchestrator.py)
    return ApiError(status, code, message, details)


def _bad(field: str, message: str):
    return _err(400, "VALIDATION_ERROR", f"{field}: {message}", {"field": field})


def _only(obj: dict, allowed: set[str], at: str = "") -> None:
    for k in obj:
        if k not in allowed:
            raise _bad(at + k, "unknown field")


def _obj(v: Any, field: str, required: bool = False) -> dict | None:
    if v is None:
        if required:
            raise _bad(field, "is required")
        return None
    if not isinstance(v, dict):
        raise _bad(field, "must be an object")
    return v


def _text(obj: dict, key: str, at: str = "", required: bool = False) -> str | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise _bad(at + key, "is required")
        return None
    if not isinstance(v, str) or not v.strip():
        raise _bad(at + key, "must be a non-empty string")
    return v


def _texts(obj: dict, key: str, at: str = "") -> list[str] | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise _bad(at + key, "must be an array of non-empty strings")
    return v


def _flag(obj: dict, key: str, at: str = "") -> bool | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, bool):
        raise _bad(at + key, "must be true or false")
    return v


def _number(obj: dict, key: str, at: str = "") -> Decimal | None:
    """A non-negative JSON number (or decimal string) as a Decimal."""
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, str) and _DECIMAL.match(v):
        return Decimal(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")) \
            or v < 0:
        raise _bad(at + key, "must be a non-negative number")
    return Decimal(str(v))


def _address(obj: dict, key: str, at: str = "", required: bool = False) -> str | None:
    v = _text(obj, key, at, required)
    if v is not None and not _ADDRESS.match(v):
        raise _bad(at + key, "must be 0x and 40 hex digits")
    return v


def _tx_hash(obj: dict, key: str = "transactionHash") -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not _TX_HASH.match(v):
        raise _bad(key, "must be 0x and 64 hex digits")
    return v


def _same(a: str | None, b: str | None) -> bool:
    return (a or "").lower() == (b or "").lower()


def _checksum(addr: str) -> str:
    try:
        from eth_utils import to_checksum_address  # noqa: PLC0415 - comes with eth_account
        return to_checksum_address(addr)
    except (ImportError, ValueError):
        return addr


def _num(d: Decimal) -> int | float:
    """A Decimal as a JSON number (the SDK types amounts as numbers)."""
    return int(d) if d == d.to_integral_value() else float(d)


def _redact(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _redact(x) for k, x in v.items()}
    return "[REDACTED]" if v is not None else None


class MarketOrders:
    """State: ``market_services`` (id -> service), ``market_searches``, ``market_orders`` (id -> order),
    ``market_payments`` (order id -> payment), ``market_disputes`` (order id -> dispute),
    ``market_used_txs`` (lower-case tx hash -> order id); not persisted: ``market_requests`` (the request
    log), ``market_faults``, ``market_down``."""

    def init_market(self) -> None:
        self.market_services: dict[str, dict] = {}
        self.market_searches: dict[str, dict] = {}
        self.market_orders: dict[str, dict] = {}
        self.market_payments: dict[str, dict] = {}
        self.market_disputes: dict[str, dict] = {}
        self.market_used_txs: dict[str, str] = {}
        self.market_requests: list[dict] = []
        self.market_faults: list[dict] = []
        self.market_down = False
        self.quote_ttl = DEFAULT_QUOTE_TTL

    @staticmethod
    def _public(d: dict | None) -> dict | None:
        return None if d is None else {k: v for k, v in d.items() if not k.startswith("_")}

    # ---- services (seeded by tests) -----------------------------------------------------------------------
    def seed_service(self, body: Any) -> dict:
        """``POST /__mock__/market/services``: one service, replacing one with the same id."""
        if not isinstance(body, dict):
            raise _bad("body", "must be a JSON object")
        _only(body, SEED_FIELDS)
        sid = _text(body, "id") or "svc_" + secrets.token_hex(6)
        stype = _text(body, "serviceType", required=True)
        ops = _texts(body, "operations")
        if ops is None:
            op = _text(body, "operation")
            ops = [op] if op else None
        if not ops:
            raise _bad("operations", "at least one operation is required (operation or operations)")
        price = _number(body, "price") if body.get("price") is not None else Decimal(0)
        currency = _text(body, "currency") or "USDT"
        required = _flag(body, "paymentRequired")
        required = price > 0 if required is None else required
        rail_type = body.get("railType", "wallet")
        if rail_type not in RAIL_TYPES:
            raise _bad("railType", f"must be one of {', '.join(RAIL_TYPES)}")
        token = _text(body, "token") or currency
        decimals = body.get("tokenDecimals", _decimals(token))
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 36:
            raise _bad("tokenDecimals", "must be an integer between 0 and 36")
        try:
            raw = _raw(format(price, "f"), decimals)
        except ValueError:
            raise _bad("price", f"has more decimals than the token's {decimals}") from None
        rail: dict[str, Any] = {"type": rail_type if required else "not-required",
                                "chain": _text(body, "chain") or "peaq", "token": token,
                                "tokenAddress": _address(body, "tokenAddress"), "tokenDecimals": decimals}
        payee, escrow = _address(body, "payeeAddress"), _address(body, "escrowAddress")
        if required and rail_type == "wallet" and payee is None:
            raise _bad("payeeAddress", "is required for a paid wallet-rail service")
        if required and rail_type == "onchain-escrow" and escrow is None:
            raise _bad("escrowAddress", "is required for a paid onchain-escrow service")
        rail["payeeAddress" if rail_type == "wallet" else "escrowAddress"] = payee if rail_type == "wallet" else escrow
        mode = EXECUTION_MODES.get(body.get("executionMode", "native")) if isinstance(
            body.get("executionMode", "native"), str) else None
        if mode is None:
            raise _bad("executionMode", "must be native or handoff")
        outcome = body.get("outcomeStatus", "completed")
        if outcome not in OUTCOME_STATUSES:
            raise _bad("outcomeStatus", "must be completed or failed")
        handoff = _obj(body.get("handoff"), "handoff")
        if handoff is not None:
            _only(handoff, {"label", "url", "notes"}, "handoff.")
            _text(handoff, "label", "handoff.", required=True)
            _text(handoff, "url", "handoff.", required=True)
            handoff = {"label": handoff["label"], "url": handoff["url"], "notes": _texts(handoff, "notes", "handoff.") or []}
        elif mode == "external-handoff":
            handoff = {"label": f"Continue {sid} with the provider", "url": f"https://provider.invalid/handoff/{sid}",
                       "notes": ["external handoff (test server)"]}
        name = _text(body, "name") or sid
        provider = _text(body, "providerKey") or "mock-provider"
        integration = _text(body, "integrationStatus") or ("native" if mode == "native" else "partner-required")
        svc = {"id": sid, "skillKey": _text(body, "skillKey") or f"mock.{sid}", "providerKey": provider,
               "providerId": f"prv_{provider}", "providerLabel": provider, "serviceType": stype, "name": name,
               "description": _text(body, "description") or f"{name} (test server)", "operations": ops,
               "authType": "wallet" if required else "none", "accessMode": "public", "executionMode": mode,
               "integrationStatus": integration, "distribution": "peaq-native", "maturity": "beta",
               "kind": "runtime", "capabilities": _texts(body, "capabilities") or [],
               "region": _text(body, "region") or "global", "freshnessSeconds": 60,
               "requiresHumanEnablement": False, "updatedAt": self.iso(),
               "operationContracts": [{"operation": o, "inputFields": [], "outputFields": [], "exampleInput": {}}
                                      for o in ops],
               "_price": format(price, "f"), "_rawPrice": str(raw), "_currency": currency, "_required": required,
               "_rail": {k: v for k, v in rail.items() if v is not None}, "_result": body.get("result", {"ok": True}),
               "_outcomeStatus": outcome, "_errorMessage": _text(body, "errorMessage")}
        if handoff is not None:
            svc["handoff"] = handoff
        svc["metadata"] = {"pricing": self._pricing(svc), "payment": self._recommendation(svc)}
        self.market_services[sid] = svc
        return self._public(svc)

    @staticmethod
    def _pricing(svc: dict) -> dict:
        return {"mode": "fixed", "amount": _num(Decimal(svc["_price"])), "currency": svc["_currency"],
                "notes": [f"{svc['_price']} {svc['_currency']} per {svc['operations'][0]}"]}

    @staticmethod
    def _recommendation(svc: dict, payer: str | None = None) -> dict:
        """The PaymentRailRecommendation (§3.7) of a service; ``payer`` = the agent's address."""
        r = svc["_rail"]
        rec = {"defaultRail": r["type"], "required": svc["_required"], "supportedRails": [r["type"]],
               "chain": r.get("chain"), "token": r.get("token"), "tokenAddress": r.get("tokenAddress"),
               "payeeAddress": r.get("payeeAddress"), "payerAddress": payer,
               "notes": ([f"pay into the escrow {r['escrowAddress']}"] if r.get("escrowAddress") else [])}
        return {k: v for k, v in rec.items() if v is not None}

    def _service(self, sid: str, field: str = "serviceId") -> dict:
        s = self.market_services.get(sid)
        if s is None:
            raise _err(404, "NOT_FOUND", f"service {sid} not found", {"field": field, "serviceId": sid})
        return s

    def _optional_auth(self, headers) -> dict | None:
        """A? routes: the pairing when a token is sent, else the platform key."""
        if headers.get("x-agent-pairing-token") is not None:
            return self.require_pairing(headers)
        self.require_platform(headers)
        return None

    def list_services(self, query: dict) -> tuple[int, dict]:
        want = {k: query[k][-1] for k in ("machineId", "serviceType", "executionMode", "providerKey") if k in query}
        if "executionMode" in want and want["executionMode"] not in ("native", "external-handoff"):
            raise _bad("executionMode", "must be native or external-handoff")
        items = [self._public(s) for s in self.market_services.values()
                 if all(s.get(k) == v for k, v in want.items() if k != "machineId")]
        return self.list_page(items, query)

    # ---- search (#28-29) ------------------------------------------------------------------------------------
    SEARCH_FIELDS = {"machineId", "agentPairingId", "serviceType", "operation", "requiredCapabilities", "region",
                     "maxResults", "allowExternalHandoff", "requireNativeExecution", "budget", "providerCredentials"}

    def _pairing_ids(self, pairing: dict, body: dict, required: bool) -> None:
        for key, mine in (("machineId", pairing["machineId"]), ("agentPairingId", pairing["id"])):
            v = _text(body, key, required=required)
            if v is not None and v != mine:
                raise _err(403, "AGENT_POLICY_DENIED", f"{key} {v} is not this pairing's ({mine})", {"field": key})

    def search(self, pairing: dict, body: dict) -> tuple[int, dict]:
        _only(body, self.SEARCH_FIELDS)
        self._pairing_ids(pairing, body, required=False)
        stype, op, region = _text(body, "serviceType"), _text(body, "operation"), _text(body, "region")
        caps = _texts(body, "requiredCapabilities") or []
        handoff_ok = _flag(body, "allowExternalHandoff")
        native_only = bool(_flag(body, "requireNativeExecution"))
        handoff_ok = (not native_only) if handoff_ok is None else handoff_ok
        n = body.get("maxResults", 10)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= SEARCH_MAX_RESULTS:
            raise _bad("maxResults", f"must be an integer between 1 and {SEARCH_MAX_RESULTS}")
        budget = _obj(body.get("budget"), "budget") or {}
        _only(budget, {"max", "amount", "preferred", "currency"}, "budget.")
        cap = _number(budget, "max", "budget.")
        cap = _number(budget, "amount", "budget.") if cap is None else cap
        _number(budget, "preferred", "budget.")
        _text(budget, "currency", "budget.")
        _obj(body.get("providerCredentials"), "providerCredentials")
        now = self.now()
        quotes = []
        for s in self.market_services.values():
            if stype and not (s["serviceType"] == stype or s["serviceType"].startswith(stype + ".")):
                continue
            if op and op not in s["operations"]:
                continue
            if region and s["region"] not in (region, "global"):
                continue
            if not set(caps) <= set(s["capabilities"]):
                continue
            native = s["executionMode"] == "native"
            if (native_only and not native) or (not native and not handoff_ok):
                continue
            price = Decimal(s["_price"])
            score, reasons = Decimal("0.5"), []
            if stype:
                score += Decimal("0.2")
                reasons.append(f"serviceType {s['serviceType']} matches {stype}")
            if op:
                score += Decimal("0.2")
                reasons.append(f"offers {op}")
            if native:
                score += Decimal("0.05")
                reasons.append("native execution")
            if cap is not None and price > cap:
                score -= Decimal("0.4")
                reasons.append(f"price {s['_price']} {s['_currency']} is above the budget {format(cap, 'f')}")
            q = {"id": "qte_" + secrets.token_hex(8), "serviceId": s["id"], "skillKey": s["skillKey"],
                 "providerKey": s["providerKey"], "executionMode": s["executionMode"],
                 "integrationStatus": s["integrationStatus"], "operation": op or s["operations"][0],
                 "score": float(score), "reasons": reasons, "expiresAt": self.iso(now + self.quote_ttl),
                 "pricing": self._pricing(s), "payment": self._recommendation(s, pairing["agentAddress"]),
                 "_expires": now + self.quote_ttl, "_price": s["_price"], "_currency": s["_currency"]}
            if s.get("handoff"):
                q["handoff"] = s["handoff"]
            quotes.append(q)
        quotes.sort(key=lambda q: (-q["score"], Decimal(q["_price"]), q["serviceId"]))
        quotes = quotes[:n]
        payload = dict(body)
        if isinstance(payload.get("providerCredentials"), dict):  # kept, but never given back
            payload["providerCredentials"] = _redact(payload["providerCredentials"])
        search = {"id": "srch_" + secrets.token_hex(8), "machineId": pairing["machineId"],
                  "agentPairingId": pairing["id"], "status": "completed" if quotes else "no_match",
                  "createdAt": self.iso(now), "requestPayload": payload,
                  "normalizedTask": {"serviceType": stype, "requiredCapabilities": caps,
                                     "allowExternalHandoff": handoff_ok, "requireNativeExecution": native_only,
                                     "operation": op, "region": region},
                  "quotes": quotes}
        self.market_searches[search["id"]] = search
        return 201, {"item": self._public_search(search)}

    def _public_search(self, s: dict) -> dict:
        return {**s, "quotes": [self._public(q) for q in s["quotes"]]}

    def _quote(self, qid: str) -> tuple[dict, dict]:
        for s in self.market_searches.values():
            for q in s["quotes"]:
                if q["id"] == qid:
                    return s, q
        raise _err(404, "NOT_FOUND", f"quote {qid} not found", {"field": "quoteId", "quoteId": qid})

    # ---- orders (#30-32) ------------------------------------------------------------------------------------
    ORDER_FIELDS = {"machineId", "agentPairingId", "serviceId", "searchId", "quoteId", "operation", "input",
                    "budget", "providerCredentials"}

    def create_order(self, pairing: dict, body: dict) -> tuple[int, dict]:
        _only(body, self.ORDER_FIELDS)
        self._pairing_ids(pairing, body, required=True)
        sid = _text(body, "serviceId", required=True)
        search_id, qid, op = _text(body, "searchId"), _text(body, "quoteId"), _text(body, "operation")
        inp = _obj(body.get("input"), "input")
        budget = _obj(body.get("budget"), "budget")
        if budget is not None:
            _only(budget, {"amount", "max", "currency"}, "budget.")
            b_amount = _number(budget, "amount", "budget.")
            b_max = _number(budget, "max", "budget.")
            b_cur = _text(budget, "currency", "budget.")
        _obj(body.get("providerCredentials"), "providerCredentials")
        s = self._service(sid)
        if search_id is not None:
            srch = self.market_searches.get(search_id)
            if srch is None:
                raise _err(404, "NOT_FOUND", f"search {search_id} not found", {"field": "searchId"})
            if srch["agentPairingId"] != pairing["id"]:
                raise _err(403, "AGENT_POLICY_DENIED", "the search is not this pairing's", {"field": "searchId"})
        price, currency = s["_price"], s["_currency"]
        if qid is not None:
            srch, q = self._quote(qid)
            if q["serviceId"] != sid:
                raise _bad("quoteId", f"quotes {q['serviceId']}, not {sid}")
            if search_id is not None and srch["id"] != search_id:
                raise _bad("quoteId", f"is not a quote of search {search_id}")
            if srch["agentPairingId"] != pairing["id"]:
                raise _err(403, "AGENT_POLICY_DENIED", "the quote is not this pairing's", {"field": "quoteId"})
            if self.now() >= q["_expires"]:
                raise _err(409, "QUOTE_EXPIRED", f"quote {qid} expired at {q['expiresAt']}",
                           {"quoteId": qid, "expiresAt": q["expiresAt"]})
            price, currency, op = q["_price"], q["_currency"], op or q["operation"]
            search_id = srch["id"]
        op = op or s["operations"][0]
        if op not in s["operations"]:
            raise _bad("operation", f"{sid} offers {', '.join(s['operations'])}")
        now = self.iso()
        o = {"id": "mord_" + secrets.token_hex(8), "machineId": pairing["machineId"], "agentPairingId": pairing["id"],
             "serviceId": sid, "skillKey": s["skillKey"], "providerKey": s["providerKey"],
             "serviceType": s["serviceType"], "operation": op, "executionMode": s["executionMode"],
             "integrationStatus": s["integrationStatus"], "status": "created" if s["_required"] else "ready",
             "input": inp or {}, "payment": self._recommendation(s, pairing["agentAddress"]),
             "createdAt": now, "updatedAt": now, "searchId": search_id, "quoteId": qid, "errorMessage": None,
             "_price": price, "_currency": currency, "_required": s["_required"], "_rail": dict(s["_rail"]),
             "_runs": 0}
        if budget is not None:
            b = b_amount if b_amount is not None else b_max
            o["budget"] = {"amount": None if b is None else _num(b), "currency": b_cur}
        self.market_orders[o["id"]] = o
        return 201, {"item": self._public(o)}

    def _order(self, oid: str) -> dict:
        o = self.market_orders.get(oid)
        if o is None:
            raise _err(404, "NOT_FOUND", f"order {oid} not found", {"orderId": oid})
        return o

    def _my_order(self, pairing: dict, oid: str) -> dict:
        o = self._order(oid)
        if o["agentPairingId"] != pairing["id"]:
            raise _err(403, "AGENT_POLICY_DENIED", "the order is not this pairing's", {"orderId": oid})
        return o

    def list_orders(self, query: dict) -> tuple[int, dict]:
        mid = query.get("machineId", [""])[-1]
        if not mid.strip():
            raise _bad("machineId", "is required")
        self.machine(mid)
        return self.list_page([self._public(o) for o in self.market_orders.values() if o["machineId"] == mid], query)

    def _touch(self, *records: dict) -> None:
        for r in records:
            r["updatedAt"] = self.iso()

    # ---- payment intent and the delegation policy (#33-34) ---------------------------------------------------
    INTENT_RAIL_FIELDS = {"type", "chain", "token", "tokenAddress", "tokenMint", "escrowAddress", "externalUrl",
                          "provider", "accountId", "walletAddress", "payerAddress", "payeeAddress", "paymentIntentId",
                          "metadata"}

    def _spent_today(self, pairing: dict) -> Decimal:
        today = datetime.fromtimestamp(self.now(), timezone.utc).date()
        total = Decimal(0)
        for p in self.market_payments.values():
            if (p["_pairingId"] == pairing["id"] and p["status"] in COUNTED_PAYMENTS
                    and datetime.fromtimestamp(p["_created"], timezone.utc).date() == today):
                total += Decimal(p["_amount"])
        return total

    def _enforce_policy(self, pairing: dict, o: dict, amount: Decimal, currency: str) -> None:
        pol = pairing.get("delegationPolicy") or {}
        for key, allowed, denied, field in ((o["serviceId"], "allowedServiceIds", "deniedServiceIds", "serviceId"),
                                            (o["skillKey"], "allowedSkillKeys", "deniedSkillKeys", "skillKey")):
            if key in (pol.get(denied) or []) or ((pol.get(allowed) or []) and key not in pol[allowed]):
                raise _err(403, "AGENT_POLICY_DENIED", f"the delegation policy does not allow {field} {key}",
                           {"field": field, field: key})
        per, daily = pol.get("perTransactionLimit"), pol.get("dailySpendLimit")
        if amount <= 0 or (per is None and daily is None):
            return
        if pol.get("currency") and not _same(pol["currency"], currency):
            raise _err(403, "AGENT_POLICY_DENIED", f"the limits are in {pol['currency']}, the order in {currency}",
                       {"field": "currency", "currency": currency, "policyCurrency": pol["currency"]})
        if per is not None and amount > Decimal(str(per)):
            raise _err(403, "AGENT_SPEND_LIMIT_EXCEEDED",
                       f"{format(amount, 'f')} {currency} is over the per-transaction limit {per}",
                       {"limit": per, "amount": _num(amount), "currency": currency})
        if daily is not None:
            spent = self._spent_today(pairing)
            if spent + amount > Decimal(str(daily)):
                raise _err(403, "AGENT_DAILY_LIMIT_EXCEEDED",
                           f"{format(spent, 'f')} + {format(amount, 'f')} {currency} is over the daily limit {daily}",
                           {"limit": daily, "spentToday": _num(spent), "amount": _num(amount), "currency": currency})

    def payment_intent_order(self, pairing: dict, oid: str, body: dict) -> tuple[int, dict]:
        o = self._my_order(pairing, oid)
        _only(body, {"rail", "amount", "currency"})
        want = _obj(body.get("rail"), "rail") or {}
        _only(want, self.INTENT_RAIL_FIELDS, "rail.")
        for k in self.INTENT_RAIL_FIELDS - {"metadata"}:
            _text(want, k, "rail.")
        for k in ("tokenAddress", "escrowAddress", "payerAddress", "payeeAddress"):
            _address(want, k, "rail.")
        _obj(want.get("metadata"), "rail.metadata")
        amount_in, currency_in = _number(body, "amount"), _text(body, "currency")
        if o["status"] in CLOSED_ORDERS:
            raise _err(409, "ORDER_CLOSED", f"order {oid} is {o['status']}", {"orderId": oid, "status": o["status"]})
        existing = self.market_payments.get(oid)
        if existing is not None:  # one payment per order: asking again answers it
            return 200, {"item": self._public(existing)}
        rail, amount, currency = o["_rail"], Decimal(o["_price"]), o["_currency"]
        for k in ("type", "chain", "token", "tokenAddress", "escrowAddress", "payeeAddress"):
            if want.get(k) is not None and not _same(want[k], rail.get(k)):
                raise _bad(f"rail.{k}", f"the service's rail has {rail.get(k)}")
        if amount_in is not None and amount_in != amount:
            raise _bad("amount", f"the quoted amount is {o['_price']}")
        if currency_in is not None and not _same(currency_in, currency):
            raise _bad("currency", f"the quoted currency is {currency}")
        now = self.now()
        if not o["_required"]:
            status = "not_required"
        else:
            self._enforce_policy(pairing, o, amount, currency)
            status = "intent_created"
        pay_rail = {k: v for k, v in rail.items() if k != "tokenDecimals"}
        pay_rail.update({"payerAddress": want.get("payerAddress") or pairing["agentAddress"],
                         "paymentIntentId": "pi_" + secrets.token_hex(8),
                         "metadata": {"amount": o["_price"], "rawAmount": str(_raw(o["_price"], rail["tokenDecimals"])),
                                      "tokenDecimals": rail["tokenDecimals"]}})
        p = {"id": "mpay_" + secrets.token_hex(8), "orderId": oid, "machineId": o["machineId"], "status": status,
             "rail": pay_rail, "notes": [], "amount": _num(amount), "currency": currency, "proof": None,
             "createdAt": self.iso(now), "updatedAt": self.iso(now), "_pairingId": pairing["id"], "_created": now,
             "_amount": o["_price"]}
        self.market_payments[oid] = p
        if o["_required"]:
            o["status"] = "payment_pending"
            self._touch(o)
        return 201, {"item": self._public(p)}

    # ---- settlement (#38-41) ----------------------------------------------------------------------------------
    def _verify_evm_transfer(self, tx: str, token_address: str | None, payee: str, raw_due: int,
                             payer: str | None) -> tuple[int, str]:
        """(block, payer) of ``tx`` when it moves at least ``raw_due`` of the token (or native value) from
        ``payer`` (any payer when None) to ``payee``; an ApiError (PAYMENT_*) when not."""
        if not self.rpc_url:
            raise _err(400, "PAYMENT_RPC_REQUIRED", "this server has no RPC to verify the payment on (--rpc-url)")
        try:
            receipt = self._rpc("eth_getTransactionReceipt", [tx])
            tx_obj = None if receipt is None or token_address else self._rpc("eth_getTransactionByHash", [tx])
        except Exception as e:  # noqa: BLE001 - any RPC failure
            raise _err(502, "PAYMENT_RPC_ERROR", f"RPC: {e}", {"transactionHash": tx}) from None
        if receipt is None:
            raise _err(409, "PAYMENT_NOT_MINED", f"{tx} is not mined", {"transactionHash": tx})
        if not isinstance(receipt, dict) or (tx_obj is not None and not isinstance(tx_obj, dict)):
            raise _err(502, "PAYMENT_RPC_ERROR", "the RPC answered something that is not a receipt",
                       {"transactionHash": tx})
        if receipt.get("status") != "0x1":
            raise _err(400, "PAYMENT_TX_FAILED", f"{tx} failed", {"transactionHash": tx})
        try:
            block = int(receipt.get("blockNumber") or "0x0", 16)
            if token_address:
                for log in receipt.get("logs") or []:
                    t = log.get("topics") or []
                    if (_same(log.get("address"), token_address) and len(t) == 3 and _same(t[0], TRANSFER_TOPIC)
                            and _same("0x" + t[2][-40:], payee) and (payer is None or _same("0x" + t[1][-40:], payer))
                            and int(log.get("data") or "0x0", 16) >= raw_due):
                        return block, _checksum("0x" + t[1][-40:])
            elif (tx_obj and _same(tx_obj.get("to"), payee) and (payer is None or _same(tx_obj.get("from"), payer))
                  and int(tx_obj.get("value") or "0x0", 16) >= raw_due):
                return block, _checksum(tx_obj["from"])
        except (TypeError, ValueError, AttributeError):  # a receipt this server cannot read pays nothing
            pass
        raise _err(400, "PAYMENT_TRANSFER_NOT_FOUND",
                   f"{tx} does not move {raw_due} of {token_address or 'the native token'} to {payee}"
                   + (f" from {payer}" if payer else ""),
                   {"transactionHash": tx, "payeeAddress": payee, "rawAmount": str(raw_due)})

    def _settle_check(self, oid: str, tx: str, rail_type: str, other: str) -> tuple[dict, dict | None]:
        """The payment to settle with ``tx``, or (payment, payment) when ``tx`` already settled it."""
        p = self.market_payments.get(oid)
        if p is None or p["status"] == "not_required":
            raise _err(409, "PAYMENT_REQUIRED", "create a payment intent first" if p is None else
                       "this order needs no payment", {"orderId": oid})
        if p["rail"]["type"] != rail_type:
            raise _bad("rail", f"this order pays through {p['rail']['type']}: use {other}")
        if p.get("proof") and _same(p["proof"].get("transactionHash"), tx):
            return p, p  # the same proof again: the same answer
        if p["status"] != "intent_created":
            raise _err(409, "PAYMENT_ALREADY_RECORDED", f"the payment is {p['status']} with another transaction",
                       {"orderId": oid, "status": p["status"]})
        used = self.market_used_txs.get(tx.lower())
        if used is not None and used != oid:
            raise _err(409, "PAYMENT_TX_ALREADY_USED", f"{tx} already paid another order", {"transactionHash": tx})
        return p, None

    def _hold(self, o: dict, p: dict, tx: str, proof: dict) -> tuple[int, dict]:
        p["status"], p["proof"] = "held", proof
        self.market_used_txs[tx.lower()] = o["id"]
        if o["status"] in ("created", "payment_pending"):
            o["status"] = "ready"
        self._touch(o, p)
        return 200, {"item": self._public(p)}

    PROOF_FIELDS = {"verificationMode", "chain", "token", "payerAddress", "payeeAddress", "amount", "transactionHash",
                    "transactionSignature", "tokenAddress", "tokenMint", "tokenDecimals", "rawAmount", "metadata",
                    "payment", "paymentReference"}

    def payment_proof_order(self, pairing: dict, oid: str, body: dict) -> tuple[int, dict]:
        o = self._my_order(pairing, oid)
        _only(body, self.PROOF_FIELDS)
        if "payment" in body or "paymentReference" in body:
            raise _bad("payment", "x402 proofs are not verified by this server; send an EVM transfer proof")
        if "transactionSignature" in body or "tokenMint" in body:
            raise _bad("transactionSignature", "Solana proofs are not verified by this server")
        mode = body.get("verificationMode")
        if mode not in ("rpc", "recorded"):
            raise _bad("verificationMode", "must be rpc or recorded")
        tx = _tx_hash(body)
        chain, token = _text(body, "chain", required=True), _text(body, "token", required=True)
        payer = _address(body, "payerAddress", required=True)
        payee = _address(body, "payeeAddress", required=True)
        amount = body.get("amount")
        if not isinstance(amount, str) or not _DECIMAL.match(amount):
            raise _bad("amount", "must be a decimal string")
        token_address = _address(body, "tokenAddress")
        decimals = body.get("tokenDecimals")
        if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int)):
            raise _bad("tokenDecimals", "must be an integer")
        raw_amount = body.get("rawAmount")
        if raw_amount is not None and (not isinstance(raw_amount, str) or not _UINT.match(raw_amount)):
            raise _bad("rawAmount", "must be a decimal integer string")
        _obj(body.get("metadata"), "metadata")
        p, same = self._settle_check(oid, tx, "wallet", "payment/escrow-lock")
        if same is not None:
            return 200, {"item": self._public(same)}
        r, meta = p["rail"], p["rail"]["metadata"]
        for field, got, want in (("chain", chain, r.get("chain")), ("token", token, r.get("token")),
                                 ("payeeAddress", payee, r.get("payeeAddress"))):
            if not _same(got, want):
                raise _bad(field, f"the payment intent has {want}")
        if token_address is not None and not _same(token_address, r.get("tokenAddress")):
            raise _bad("tokenAddress", f"the payment intent has {r.get('tokenAddress')}")
        if Decimal(amount) != Decimal(meta["amount"]):
            raise _bad("amount", f"the payment intent is for {meta['amount']}")
        if decimals is not None and decimals != meta["tokenDecimals"]:
            raise _bad("tokenDecimals", f"the token has {meta['tokenDecimals']} decimals")
        if raw_amount is not None and raw_amount != meta["rawAmount"]:
            raise _bad("rawAmount", f"the payment intent is for {meta['rawAmount']}")
        block = None
        if mode == "rpc":
            block, _ = self._verify_evm_transfer(tx, r.get("tokenAddress"), r["payeeAddress"], int(meta["rawAmount"]),
                                                 payer)
        proof = {"chain": chain, "token": token, "transactionHash": tx, "payerAddress": payer,
                 "verifiedAt": self.iso(), "verificationMode": mode, "blockNumber": block}
        return self._hold(o, p, tx, proof)

    def escrow_lock(self, pairing: dict, oid: str, body: dict) -> tuple[int, dict]:
        o = self._my_order(pairing, oid)
        _only(body, {"transactionHash", "chain", "escrowAddress"})
        tx = _tx_hash(body)
        chain = _text(body, "chain", required=True)
        escrow = _address(body, "escrowAddress", required=True)
        p, same = self._settle_check(oid, tx, "onchain-escrow", "payment-proof")
        if same is not None:
            return 200, {"item": self._public(same)}
        r, meta = p["rail"], p["rail"]["metadata"]
        if not _same(escrow, r.get("escrowAddress")):
            raise _bad("escrowAddress", f"the payment intent's escrow is {r.get('escrowAddress')}")
        if not _same(chain, r.get("chain")):
            raise _bad("chain", f"the payment intent has {r.get('chain')}")
        block, payer = self._verify_evm_transfer(tx, r.get("tokenAddress"), r["escrowAddress"], int(meta["rawAmount"]),
                                                 None)
        proof = {"chain": chain, "token": r.get("token"), "transactionHash": tx, "payerAddress": payer,
                 "verifiedAt": self.iso(), "verificationMode": "rpc", "blockNumber": block}
        return self._hold(o, p, tx, proof)

    def _payment_of(self, oid: str) -> dict:
        p = self.market_payments.get(oid)
        if p is None or p["status"] == "not_required":
            raise _err(409, "PAYMENT_REQUIRED", "this order has no payment to settle", {"orderId": oid})
        return p

    def _settle_body(self, body: Any, extra: str) -> dict:
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise _bad("body", "must be a JSON object")
        _only(body, {"transactionHash", extra})
        if body.get("transactionHash") is not None:
            _tx_hash(body)
        _text(body, extra)
        return body

    def release(self, pairing: dict, oid: str, body: Any) -> tuple[int, dict]:
        o = self._my_order(pairing, oid)
        body = self._settle_body(body, "notes")
        p = self._payment_of(oid)
        if p["status"] == "released":
            return 200, {"item": self._public(p)}
        if p["status"] != "release_pending":
            raise _err(409, "PAYMENT_STATE_INVALID", f"the payment is {p['status']}; release follows a confirmed order",
                       {"orderId": oid, "status": p["status"]})
        p["status"] = "released"
        p["notes"] = p["notes"] + [f"released: {body['notes']}" if body.get("notes") else "released"]
        if body.get("transactionHash"):
            p["notes"].append(f"release transaction {body['transactionHash']}")
        self._touch(o, p)
        return 200, {"item": self._public(p)}

    def refund(self, pairing: dict, oid: str, body: Any) -> tuple[int, dict]:
        o = self._my_order(pairing, oid)
        body = self._settle_body(body, "reason")
        p = self._payment_of(oid)
        if p["status"] == "refunded":
            return 200, {"item": self._public(p)}
        if p["status"] not in ("held", "release_pending", "frozen"):
            raise _err(409, "PAYMENT_STATE_INVALID", f"the payment is {p['status']}; nothing held to refund",
                       {"orderId": oid, "status": p["status"]})
        p["status"] = "refunded"
        p["notes"] = p["notes"] + [f"refunded: {body['reason']}" if body.get("reason") else "refunded"]
        if body.get("transactionHash"):
            p["notes"].append(f"refund transaction {body['transactionHash']}")
        d = self.market_disputes.get(oid)
        if d is not None and d["status"] == "open":
            d["status"] = "resolved"
            self._touch(d)
        if o.get("_execution") is None and o["status"] not in CLOSED_ORDERS:
            o["status"] = "cancelled"
        self._touch(o, p)
        return 200, {"item": self._public(p)}

    # ---- execute, confirm, dispute (#35-37) ---------------------------------------------------------------------
    def execute(self, pairing: dict, oid: str, body: dict) -> tuple[int, dict]:
        o = self._my_order(pairing, oid)
        _only(body, {"input", "payment"})
        inp = _obj(body.get("input"), "input")
        if body.get("payment") is not None:
            raise _bad("payment", "x402 execution payments are not supported by this server")
        if o.get("_execution") is not None:  # executed once: the saved execution, no second run
            ex = o["_execution"]
            return ex["statusCode"], {"order": self._public(o), "execution": ex}
        if o["status"] in CLOSED_ORDERS:
            raise _err(409, "ORDER_CLOSED", f"order {oid} is {o['status']}", {"orderId": oid, "status": o["status"]})
        p = self.market_payments.get(oid)
        if o["_required"] and (p is None or p["status"] != "held"):
            raise _err(409, "PAYMENT_REQUIRED", "the order's payment is not held" if p else "the order is not paid",
                       {"orderId": oid, "paymentStatus": p["status"] if p else None})
        s = self.market_services.get(o["serviceId"]) or {}
        if inp is not None:
            o["input"] = inp
        o["_runs"] += 1
        if o["executionMode"] == "native":
            status = s.get("_outcomeStatus", "completed")
            run_id, out_id = "run_" + secrets.token_hex(8), "out_" + secrets.token_hex(8)
            outcome = {"id": out_id, "status": status, "skillKey": o["skillKey"], "serviceId": o["serviceId"],
                       "executionMode": "native", "result": copy.deepcopy(s.get("_result")),
                       "errorMessage": s.get("_errorMessage") if status == "failed" else None, "externalRef": None}
            run = {"id": run_id, "status": status, "executionMode": "native", "skillKey": o["skillKey"],
                   "serviceId": o["serviceId"], "outcomeId": out_id}
            ex = {"statusCode": 200, "run": run, "outcome": outcome}
            o["status"] = "delivered" if status == "completed" else "failed"
            o["errorMessage"] = outcome["errorMessage"]
        else:
            handoff = s.get("handoff") or {"label": "handoff", "url": "https://provider.invalid/handoff", "notes": []}
            ex = {"statusCode": 202, "handoff": handoff}
            o["status"], o["handoff"] = "handoff", handoff
        o["_execution"], o["_executedAt"] = ex, time.time()
        self._touch(o)
        return ex["statusCode"], {"order": self._public(o), "execution": ex}

    def confirm(self, pairing: dict, oid: str, body: dict) -> tuple[int, dict]:
        o = self._my_order(pairing, oid)
        _only(body, set())
        p = self.market_payments.get(oid)
        if o["status"] == "confirmed":
            return 200, {"order": self._public(o), "payment": self._public(p)}
        if o["status"] in CLOSED_ORDERS:
            raise _err(409, "ORDER_CLOSED", f"order {oid} is {o['status']}", {"orderId": oid, "status": o["status"]})
        if o["status"] not in ("delivered", "handoff"):
            raise _err(409, "ORDER_NOT_DELIVERED", f"order {oid} is {o['status']}, not delivered",
                       {"orderId": oid, "status": o["status"]})
        o["status"] = "confirmed"
        if p is not None and p["status"] == "held":
            p["status"] = "release_pending"
            self._touch(p)
        self._touch(o)
        return 200, {"order": self._public(o), "payment": self._public(p)}

    def dispute(self, pairing: dict, oid: str, body: dict) -> tuple[int, dict]:
        o = self._my_order(pairing, oid)
        _only(body, {"reason", "evidence"})
        reason = _text(body, "reason", required=True)
        evidence = _obj(body.get("evidence"), "evidence") or {}
        p = self.market_payments.get(oid)
        d = self.market_disputes.get(oid)
        if o["status"] == "disputed" and d is not None:
            return 200, {"order": self._public(o), "payment": self._public(p), "dispute": d}
        if o["status"] in CLOSED_ORDERS:
            raise _err(409, "ORDER_CLOSED", f"order {oid} is {o['status']}", {"orderId": oid, "status": o["status"]})
        now = self.iso()
        d = {"id": "dsp_" + secrets.token_hex(8), "orderId": oid, "machineId": o["machineId"], "status": "open",
             "reason": reason, "evidence": evidence, "createdAt": now, "updatedAt": now}
        self.market_disputes[oid] = d
        o["status"] = "disputed"
        if p is not None and p["status"] in ("held", "release_pending"):
            p["status"] = "frozen"
            self._touch(p)
        self._touch(o)
        return 200, {"order": self._public(o), "payment": self._public(p), "dispute": d}

    # ---- routing ------------------------------------------------------------------------------------------------
    def route_market(self, method: str, parts: list[str], query: dict, headers, body: Any) -> tuple[int, Any] | None:
        """``/market/…`` (each route checks its own auth); ``None`` for other paths."""
        if not parts or parts[0] != "market":
            return None
        need = self.need_body
        rest, n = parts[1:], len(parts)
        if rest == ["services"] and method == "GET":
            self._optional_auth(headers)
            return self.list_services(query)
        if n == 3 and rest[0] == "services" and method == "GET":
            self._optional_auth(headers)
            return 200, {"item": self._public(self._service(rest[1]))}
        if rest == ["search"] and method == "POST":
            return self.search(self.require_pairing(headers), need(body))
        if n == 3 and rest[0] == "searches" and method == "GET":
            self.require_platform(headers)
            s = self.market_searches.get(rest[1])
            if s is None:
                raise _err(404, "NOT_FOUND", f"search {rest[1]} not found", {"searchId": rest[1]})
            return 200, {"item": self._public_search(s)}
        if rest == ["orders"] and method == "GET":
            self.require_platform(headers)
            return self.list_orders(query)
        if rest == ["orders"] and method == "POST":
            return self.create_order(self.require_pairing(headers), need(body))
        if n >= 3 and rest[0] == "orders":
            oid, tail = rest[1], rest[2:]
            if tail == [] and method == "GET":
                pairing = self._optional_auth(headers)
                o = self._my_order(pairing, oid) if pairing else self._order(oid)
                return 200, {"item": self._public(o)}
            if tail == ["payment"] and method == "GET":
                self.require_platform(headers)
                self._order(oid)
                return 200, {"item": self._public(self.market_payments.get(oid))}
            post = {("payment-intent",): lambda p: self.payment_intent_order(p, oid, need(body)),
                    ("payment-proof",): lambda p: self.payment_proof_order(p, oid, need(body)),
                    ("payment", "escrow-lock"): lambda p: self.escrow_lock(p, oid, need(body)),
                    ("payment", "release"): lambda p: self.release(p, oid, body),
                    ("payment", "refund"): lambda p: self.refund(p, oid, body),
                    ("execute",): lambda p: self.execute(p, oid, need({} if body is None else body)),
                    ("confirm",): lambda p: self.confirm(p, oid, need({} if body is None else body)),
                    ("dispute",): lambda p: self.dispute(p, oid, need(body))}
            fn = post.get(tuple(tail))
            if fn is not None and method == "POST":
                return fn(self.require_pairing(headers))
        raise _err(404, "NOT_FOUND", f"no route {method} /api/v1/{'/'.join(parts)}")

    # ---- test support: request log, faults, controls ------------------------------------------------------------
    def log_market(self, method: str, path: str, query: str, headers: dict, raw: bytes, status: int | None,
                   fault: str | None = None) -> None:
        from orchestrator import loads_json  # noqa: PLC0415
        text = raw.decode("utf-8", "replace")
        try:
            parsed = loads_json(raw) if raw else None
        except (ValueError, RecursionError):
            parsed = None
        self.market_requests.append({
            "seq": len(self.market_requests) + 1, "at": self.iso(), "method": method, "path": path, "query": query,
            "headers": {k: ("[REDACTED]" if k in SECRET_HEADERS else v) for k, v in headers.items()},
            "auth": {"platform": "x-api-key" in headers, "pairing": "x-agent-pairing-token" in headers},
            "body": text, "json": parsed, "status": status, "fault": fault})

    @staticmethod
    def _path_matches(pattern: str, path: str) -> bool:
        a, b = pattern.rstrip("/").split("/"), path.rstrip("/").split("/")
        return len(a) == len(b) and all(x == "*" or x == y for x, y in zip(a, b))

    def take_market_fault(self, method: str, path: str) -> dict | None:
        if self.market_down:
            return {"mode": "fail", "status": 503, "code": "UNAVAILABLE", "message": "the orchestrator is down"}
        for f in self.market_faults:
            if f["times"] > 0 and f.get("method", method) == method and self._path_matches(f["path"], path):
                f["times"] -= 1
                return dict(f)
        return None

    def _market_fault(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise _bad("body", "must be a JSON object")
        _only(body, {"path", "method", "times", "mode", "status", "code", "message", "seconds", "after"})
        path = _text(body, "path", required=True)
        if not path.startswith("/api/v1/market/"):
            raise _bad("path", "must be a /api/v1/market/… path (a * matches one segment)")
        f = {"path": path, "times": body.get("times", 1), "mode": body.get("mode", "fail"),
             "status": body.get("status", 503), "code": _text(body, "code") or "UNAVAILABLE",
             "message": _text(body, "message") or "injected fault (test server)",
             "seconds": body.get("seconds", 30), "after": body.get("after", False)}
        if "method" in body:
            f["method"] = _text(body, "method", required=True).upper()
        if isinstance(f["times"], bool) or not isinstance(f["times"], int) or f["times"] < 1:
            raise _bad("times", "must be a positive integer")
        if f["mode"] not in ("fail", "hang"):
            raise _bad("mode", "must be fail or hang")
        if isinstance(f["status"], bool) or not isinstance(f["status"], int) or not 400 <= f["status"] <= 599:
            raise _bad("status", "must be an HTTP error status")
        if isinstance(f["seconds"], bool) or not isinstance(f["seconds"], (int, float)) or not 0 <= f["seconds"] <= 600:
            raise _bad("seconds", "must be a number of seconds between 0 and 600")
        if not isinstance(f["after"], bool):
            raise _bad("after", "must be true or false")
        self.market_faults.append(f)
        return f

    def _set_policy(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise _bad("body", "must be a JSON object")
        _only(body, {"pairingId", "delegationPolicy"})
        pid = _text(body, "pairingId")
        if pid is None:
            if len(self.pairings) != 1:
                raise _bad("pairingId", f"is required when there are {len(self.pairings)} pairings")
            pid = next(iter(self.pairings))
        p = self.pairings.get(pid)
        if p is None:
            raise _err(404, "NOT_FOUND", f"pairing {pid} not found", {"field": "pairingId"})
        p["delegationPolicy"] = self._policy(body.get("delegationPolicy"))
        self._touch(p)
        return self.public_pairing(p)

    def market_state(self) -> dict:
        return {"services": [self._public(s) for s in self.market_services.values()],
                "searches": [self._public_search(s) for s in self.market_searches.values()],
                "orders": [{**self._public(o), "runs": o["_runs"], "execution": o.get("_execution"),
                            "amountDue": o["_price"], "currencyDue": o["_currency"]}
                           for o in self.market_orders.values()],
                "payments": [self._public(p) for p in self.market_payments.values()],
                "disputes": list(self.market_disputes.values()),
                "runs": {oid: o["_runs"] for oid, o in self.market_orders.items()},
                "usedTransactions": dict(self.market_used_txs), "down": self.market_down,
                "faults": [f for f in self.market_faults if f["times"] > 0], "quoteTtlSeconds": self.quote_ttl,
                "now": self.iso()}

    def market_control(self, method: str, name: str, body: Any) -> tuple[int, Any]:
        """``/__mock__/market/<name>``: see the README (never part of the real API)."""
        if method == "GET" and name == "state":
            return 200, self.market_state()
        if method == "GET" and name == "requests":
            return 200, {"items": self.market_requests}
        if method == "DELETE" and name == "requests":
            self.market_requests.clear()
            return 200, {"ok": True}
        if method == "GET" and name == "runs":
            return 200, {"runs": {oid: o["_runs"] for oid, o in self.market_orders.items()}}
        if method == "POST" and name == "services":
            return 200, {"item": self.seed_service(body)}
        if method == "POST" and name == "faults":
            return 200, {"item": self._market_fault(body)}
        if method == "DELETE" and name == "faults":
            self.market_faults.clear()
            return 200, {"ok": True}
        if method == "POST" and name == "down":
            if not isinstance(body, dict) or not isinstance(body.get("down"), bool):
                raise _bad("down", "must be true or false")
            self.market_down = body["down"]
            return 200, {"down": self.market_down}
        if method == "POST" and name == "policy":
            return 200, {"item": self._set_policy(body)}
        if method == "POST" and name == "config":
            if not isinstance(body, dict):
                raise _bad("body", "must be a JSON object")
            _only(body, {"quoteTtlSeconds"})
            ttl = _number(body, "quoteTtlSeconds")
            if ttl is not None:
                self.quote_ttl = float(ttl)
            return 200, {"quoteTtlSeconds": self.quote_ttl}
        raise _err(404, "NOT_FOUND", f"no control {method} market/{name}")

