"""Helpers shared by the Gas Station tests: a bare anvil, the test server as a program, its
controls, and an owner enrolled the way an operator's own tools do it (the SDK 0.12.1 setup and
confirm calls, the TOTP computed as an authenticator app computes it)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gas_station_server as gs  # noqa: E402

ANVIL_BIN = HERE.parent / "chain" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Anvil:
    """A bare anvil on a free port (automine), chain id 3338."""

    def __init__(self, chain_id: int = 3338):
        assert ANVIL_BIN.exists(), f"{ANVIL_BIN} missing: run `npm ci` in test/chain (scripts/test does)"
        self.chain_id = chain_id
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Anvil":
        self.proc = subprocess.Popen([str(ANVIL_BIN), "--host", "127.0.0.1", "--port", str(self.port),
                                      "--chain-id", str(self.chain_id)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.rpc("eth_chainId", [])
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"anvil did not start on {self.port}")
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def rpc(self, method: str, params: list):
        req = urllib.request.Request(self.url, data=json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            out = json.loads(r.read())
        if "error" in out:
            raise RuntimeError(f"{method}: {out['error']}")
        return out["result"]

    def balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", [address, "latest"]), 16)


class StationProcess:
    """gas_station_server.py as a child process (the way the node tests use it)."""

    def __init__(self, rpc_url: str, *args: str):
        self.argv = [sys.executable, str(HERE / "gas_station_server.py"), "--rpc-url", rpc_url, *args]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> "StationProcess":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line, f"gas_station_server.py did not start ({self.argv})"
        self.url = json.loads(line)["url"]
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def control(base: str, what: str, body: dict) -> dict:
    return _post(f"{base}/__mock__/{what}", body)


def state(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/__mock__/state", timeout=30) as r:
        return json.loads(r.read())


def enrol(base: str, owner: str) -> str:
    """Set up and confirm 2FA for `owner` with the SDK's own calls; returns the TOTP secret (what
    the operator's authenticator app keeps)."""
    import requests
    from peaq_os_sdk.gas_station import confirm_faucet_2fa, setup_faucet_2fa

    os.environ.setdefault("DO_NOT_TRACK", "1")
    s = requests.Session()
    setup = setup_faucet_2fa(s, owner, base)
    secret = setup["otpauth_uri"].split("secret=")[1].split("&")[0]
    confirm_faucet_2fa(s, owner, base, gs.totp(secret))
    return secret
