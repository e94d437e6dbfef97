#!/usr/bin/env python3
"""Local peaq Gas Station test server: the faucet endpoints ``peaq-os-sdk`` 0.12.1 calls.

Shapes and error codes are what the SDK's ``gas_station`` package sends and parses (ORCHESTRATION.md
§6.1): ``POST /2fa/setup``, ``POST /2fa/confirm``, ``POST /faucet/fund``; success envelopes
``{"status","code","data"}``, refusals ``{"code","message"}`` with a non-2xx status.
``test_gas_station_sdk.py`` keeps it honest by driving the SDK's own functions against it.

What the real station does beyond the SDK's view (HTTP statuses, the order of its checks, how it
treats a request id it refused, TOTP windows and replay) is not observable from the SDK: this
server's choices are marked UNVERIFIED in ``test/gas_station/README.md``.

Funding is real: ``/faucet/fund`` sends a native transfer on the EVM chain at ``--rpc-url``
(signed by ``--funder-key``) and answers once it is mined, with its hash.

Usage::

    python3 test/gas_station/gas_station_server.py --rpc-url URL [--port N] [--funder-key 0x..]
        [--fund-amount-wei N] [--min-gas-balance-wei N] [--chain peaq]

prints ONE JSON line ``{"url", "pid"}`` and serves on 127.0.0.1 until SIGTERM/SIGINT. Test controls (not
part of the real API) under ``/__mock__/``: ``config`` (POST), ``faults`` (POST), ``state`` (GET).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import struct
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

from eth_account import Account  # installed with peaq-os-sdk

# anvil account #8: a public test key, the default funder.
DEFAULT_FUNDER_KEY = "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97"
TOTP_PERIOD = 30
TOTP_DIGITS = 6
LOCK_AFTER_INVALID = 5
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_SS58_ADDRESS = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{46,48}$")


def totp(secret_b32: str, at: float | None = None, step_offset: int = 0) -> str:
    """RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s), as an authenticator app computes it."""
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // TOTP_PERIOD) + step_offset
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[off:off + 4])[0] & 0x7FFFFFFF) % 10**TOTP_DIGITS
    return str(code).zfill(TOTP_DIGITS)


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Station:
    """The faucet's state: owners and their 2FA, fundings by request id, caps, rate limits."""

    def __init__(self, rpc_url: str, funder_key: str, fund_amount_wei: int, min_gas_balance_wei: int,
                 chains: list[str]):
        self.lock = threading.Lock()
        self.rpc_url = rpc_url
        self.funder = Account.from_key(funder_key)
        self.fund_amount_wei = fund_amount_wei
        self.min_gas_balance_wei = min_gas_balance_wei
        self.chains = set(chains)
        self.owner_cap_wei = 0      # per owner per day; 0 = no cap
        self.wallet_cap_wei = 0     # per target wallet per day; 0 = no cap
        self.rate_limit = 0         # fund requests per owner per rate_window; 0 = none
        self.rate_window = 60.0
        self.owners: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}   # requestId → {state, owner, target, result}
        self.fundings: list[dict[str, Any]] = []        # every transfer sent
        self.calls: list[dict[str, Any]] = []           # every request received (path, body)
        self.faults: list[dict[str, Any]] = []
        self.rate: dict[str, list[float]] = {}

    # ------------------------------------------------------------ chain
    def _rpc(self, method: str, params: list[Any]) -> Any:
        req = urllib.request.Request(self.rpc_url, data=json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            out = json.loads(r.read())
        if "error" in out:
            raise RuntimeError(f"{method}: {out['error']}")
        return out["result"]

    def balance(self, address: str) -> int:
        return int(self._rpc("eth_getBalance", [address, "latest"]), 16)

    def transfer(self, to: str, amount: int) -> str:
        """Send `amount` wei from the funder to `to`; the hash once mined with status 1, else raise."""
        nonce = int(self._rpc("eth_getTransactionCount", [self.funder.address, "pending"]), 16)
        chain_id = int(self._rpc("eth_chainId", []), 16)
        gas_price = int(self._rpc("eth_gasPrice", []), 16)
        tx = {"to": to, "value": amount, "gas": 21000, "maxFeePerGas": gas_price * 2,
              "maxPriorityFeePerGas": 1, "nonce": nonce, "chainId": chain_id, "type": 2}
        raw = self.funder.sign_transaction(tx).raw_transaction
        tx_hash = self._rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rcpt = self._rpc("eth_getTransactionReceipt", [tx_hash])
            if rcpt is not None:
                if int(rcpt["status"], 16) != 1:
                    raise RuntimeError("transfer reverted")
                return tx_hash
            time.sleep(0.1)
        raise RuntimeError("transfer not mined within 60 s")

    # ------------------------------------------------------------ 2FA
    def setup(self, body: dict) -> tuple[int, dict]:
        owner = body.get("ownerAddress")
        if not isinstance(owner, str) or not (_EVM_ADDRESS.match(owner) or _SS58_ADDRESS.match(owner)):
            raise Refusal(400, "INVALID_OWNER_ADDRESS", "ownerAddress is not an EVM or SS58 address")
        fmt = body.get("format", "svg")
        if fmt not in ("svg", "png"):
            raise Refusal(400, "VALIDATION_ERROR", "format must be svg or png")
        secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
        key = owner.lower()
        self.owners[key] = {"owner": owner, "secret": secret, "active": False, "invalid": 0, "locked": False}
        label = quote(f"peaq Gas Station:{owner}")
        uri = f"otpauth://totp/{label}?secret={secret}&issuer=peaq%20Gas%20Station&digits=6&period=30"
        return 200, {"status": "success", "data": {
            "ownerAddress": owner, "otpauthUri": uri,
            "qrImageUrl": f"{self.base_url}/2fa/qr/{secrets.token_hex(8)}.{fmt}"}}

    def _check_code(self, o: dict, code: Any) -> None:
        if o["locked"]:
            raise Refusal(423, "2FA_LOCKED", "2FA is locked after too many invalid codes")
        if not isinstance(code, str) or code not in {totp(o["secret"], step_offset=k) for k in (-1, 0, 1)}:
            o["invalid"] += 1
            if o["invalid"] >= LOCK_AFTER_INVALID:
                o["locked"] = True
            raise Refusal(401, "INVALID_2FA", "the 2FA code is not valid")
        o["invalid"] = 0

    def _owner(self, owner: Any) -> dict:
        o = self.owners.get(owner.lower()) if isinstance(owner, str) else None
        if o is None:
            raise Refusal(404, "2FA_NOT_CONFIGURED", "no 2FA is set up for this owner")
        return o

    def confirm(self, body: dict) -> tuple[int, dict]:
        o = self._owner(body.get("ownerAddress"))
        self._check_code(o, body.get("twoFactorCode"))
        o["active"] = True
        return 200, {"status": "success", "code": "2FA_ACTIVATED"}

    # ------------------------------------------------------------ funding
    def fund(self, body: dict) -> tuple[int, dict] | tuple[str, dict]:
        """Runs the checks under the lock; returns (status, answer), or ("transfer", ctx) when a
        transfer is to be made (outside the lock)."""
        for k in ("ownerAddress", "targetWalletAddress", "chainId", "twoFactorCode", "requestId"):
            if not isinstance(body.get(k), str) or not body[k]:
                raise Refusal(400, "VALIDATION_ERROR", f"{k} must be a non-empty string")
        target = body["targetWalletAddress"]
        if not _EVM_ADDRESS.match(target):
            raise Refusal(400, "VALIDATION_ERROR", "targetWalletAddress must be an EVM address")
        if body["chainId"] not in self.chains:
            raise Refusal(400, "UNSUPPORTED_CHAIN", f"chain {body['chainId']!r} is not configured on this faucet")
        o = self._owner(body["ownerAddress"])
        if not o["active"]:
            raise Refusal(403, "2FA_NOT_ACTIVE", "2FA is set up but not confirmed")
        self._check_code(o, body["twoFactorCode"])
        rid = body["requestId"]
        seen = self.requests.get(rid)
        if seen is not None:
            if seen["state"] == "processing":
                raise Refusal(409, "DUPLICATE_REQUEST", "this request id is being processed")
            raise Refusal(409, "REQUEST_ALREADY_PROCESSED", "this request id was completed")
        now = time.time()
        if self.rate_limit:
            recent = [t for t in self.rate.get(o["owner"].lower(), []) if now - t < self.rate_window]
            if len(recent) >= self.rate_limit:
                raise Refusal(429, "RATE_LIMITED", "too many funding requests; try again later")
            self.rate[o["owner"].lower()] = recent + [now]
        current = self.balance(target)
        if current >= self.min_gas_balance_wei:
            self.requests[rid] = {"state": "done", "owner": o["owner"], "target": target, "result": "skipped"}
            return 200, {"status": "skipped", "code": "SUFFICIENT_BALANCE", "data": {
                "currentBalance": str(current), "minGasBalance": str(self.min_gas_balance_wei)}}
        day = [f for f in self.fundings if now - f["at"] < 86400]
        amount = self.fund_amount_wei
        if self.owner_cap_wei and sum(f["amount"] for f in day if f["owner"] == o["owner"].lower()) + amount > self.owner_cap_wei:
            raise Refusal(429, "CAP_EXCEEDED_OWNER", "the owner's daily funding cap is reached")
        if self.wallet_cap_wei and sum(f["amount"] for f in day if f["target"] == target.lower()) + amount > self.wallet_cap_wei:
            raise Refusal(429, "CAP_EXCEEDED_WALLET", "the wallet's daily funding cap is reached")
        self.requests[rid] = {"state": "processing", "owner": o["owner"], "target": target, "result": None}
        return "transfer", {"rid": rid, "owner": o["owner"].lower(), "target": target, "amount": amount}

    def finish_transfer(self, ctx: dict) -> tuple[int, dict]:
        try:
            tx_hash = self.transfer(ctx["target"], ctx["amount"])
        except Exception as e:  # noqa: BLE001 - any failure of the transfer is TRANSFER_FAILED
            with self.lock:
                self.requests[ctx["rid"]].update(state="done", result="transfer_failed")
            return 502, {"code": "TRANSFER_FAILED", "message": f"the transfer failed: {e}"}
        with self.lock:
            self.requests[ctx["rid"]].update(state="done", result="funded", txHash=tx_hash)
            self.fundings.append({"requestId": ctx["rid"], "owner": ctx["owner"], "target": ctx["target"].lower(),
                                  "amount": ctx["amount"], "txHash": tx_hash, "at": time.time()})
        return 200, {"status": "success", "code": "SUCCESS",
                     "data": {"txHash": tx_hash, "fundedAmount": str(ctx["amount"])}}

    # ------------------------------------------------------------ test controls
    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/__mock__/state" and method == "GET":
            return 200, {"owners": self.owners, "requests": self.requests, "fundings": self.fundings,
                         "calls": self.calls, "funder": self.funder.address}
        if path == "/__mock__/config" and method == "POST":
            for k in ("fund_amount_wei", "min_gas_balance_wei", "owner_cap_wei", "wallet_cap_wei", "rate_limit"):
                if k in body:
                    setattr(self, k, int(body[k]))
            if "rate_window" in body:
                self.rate_window = float(body["rate_window"])
            if "funder_key" in body:
                self.funder = Account.from_key(body["funder_key"])
            if "unlock" in body:  # clear an owner's lock and failure count
                o = self._owner(body["unlock"])
                o.update(locked=False, invalid=0)
            if "forget" in body:  # the owner's 2FA was never set up
                self.owners.pop(body["forget"].lower(), None)
            if "deactivate" in body:  # set up, not confirmed yet
                self._owner(body["deactivate"])["active"] = False
            if "activate" in body:
                self._owner(body["activate"])["active"] = True
            return 200, {"ok": True}
        if path == "/__mock__/faults" and method == "POST":
            # {"path": "/faucet/fund", "drop": true}: handle the request, then close the connection
            # without answering (a lost answer). {"path", "status", "body"|"json"}: answer this instead
            # of handling it. {"path", "delaySeconds"}: a funding waits this long between its checks
            # and its transfer (the request id is "processing" meanwhile), other calls answer late.
            self.faults.append(dict(body))
            return 200, {"queued": len(self.faults)}
        return 404, {"code": "NOT_FOUND", "message": path}

    def take_fault(self, path: str) -> dict | None:
        for i, f in enumerate(self.faults):
            if f.get("path") == path:
                return self.faults.pop(i)
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "peaq-gas-station-mock/0.1"
    station: Station

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any = None, raw: bytes | None = None,
              content_type: str = "application/json") -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802
        st = self.station
        if self.path == "/__mock__/state":
            with st.lock:
                status, payload = st.control("GET", self.path, None)
                payload = json.loads(json.dumps(payload))
            self._send(status, payload)
            return
        self._send(404, {"code": "NOT_FOUND", "message": self.path})

    def do_POST(self) -> None:  # noqa: N802
        st = self.station
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._send(400, {"code": "VALIDATION_ERROR", "message": "the body is not JSON"})
            return
        if self.path.startswith("/__mock__/"):
            with st.lock:
                status, payload = st.control("POST", self.path, body)
            self._send(status, payload)
            return
        with st.lock:
            st.calls.append({"path": self.path, "body": body,
                             "headers": {k.lower(): v for k, v in self.headers.items()}})
            fault = st.take_fault(self.path)
        if fault is not None and ("status" in fault):
            if "json" in fault:
                self._send(int(fault["status"]), fault["json"])
            else:
                self._send(int(fault["status"]), raw=str(fault.get("body", "")).encode(),
                           content_type=fault.get("contentType", "text/plain"))
            return
        if not isinstance(body, dict):
            self._send(400, {"code": "VALIDATION_ERROR", "message": "the body must be a JSON object"})
            return
        try:
            with st.lock:
                if self.path == "/2fa/setup":
                    if fault is not None and fault.get("qrFails"):
                        raise Refusal(500, "QR_GENERATION_FAILED", "the QR image could not be made")
                    result: Any = st.setup(body)
                elif self.path == "/2fa/confirm":
                    result = st.confirm(body)
                elif self.path == "/faucet/fund":
                    result = st.fund(body)
                else:
                    result = (404, {"code": "NOT_FOUND", "message": self.path})
            if result[0] == "transfer":
                if fault is not None and fault.get("delaySeconds"):
                    time.sleep(float(fault.pop("delaySeconds")))
                result = st.finish_transfer(result[1])
            status, payload = result
        except Refusal as e:
            status, payload = e.status, {"code": e.code, "message": e.message}
        if fault is not None and fault.get("delaySeconds"):
            time.sleep(float(fault["delaySeconds"]))
        if fault is not None and fault.get("drop"):
            self._drop()
            return
        self._send(status, payload)


def make_server(station: Station, port: int = 0) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"station": station})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    station.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rpc-url", required=True, help="the EVM chain fundings are sent on")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--funder-key", default=DEFAULT_FUNDER_KEY)
    p.add_argument("--fund-amount-wei", type=int, default=10 * 10**18)
    p.add_argument("--min-gas-balance-wei", type=int, default=5 * 10**18,
                   help="a wallet holding this much is skipped (SUFFICIENT_BALANCE)")
    p.add_argument("--chain", action="append", default=None, help="chain ids served (default: peaq, agung)")
    args = p.parse_args(argv)
    station = Station(args.rpc_url, args.funder_key, args.fund_amount_wei, args.min_gas_balance_wei,
                      args.chain or ["peaq", "agung"])
    server = make_server(station, args.port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(json.dumps({"url": station.base_url, "pid": os.getpid()}), flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
