"""Keeps test/gas_station/gas_station_server.py honest: peaq-os-sdk 0.12.1's own gas-station functions
(`setup_faucet_2fa`, `confirm_faucet_2fa`, `fund_from_gas_station`) must accept every answer it
gives and surface every refusal with the documented code. The server funds through a real anvil.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gas_station_server as gs  # noqa: E402

import requests  # noqa: E402  (installed with the SDK)
from peaq_os_sdk.exceptions import ApiError, ValidationError  # noqa: E402
from peaq_os_sdk.gas_station import confirm_faucet_2fa, fund_from_gas_station, setup_faucet_2fa  # noqa: E402
from web3 import Web3  # noqa: E402

from gas_station_fixtures import Anvil, control, enrol, state  # noqa: E402

OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil #1: the owner's address (never signs here)
EMPTY_KEY = "0x" + "11" * 32  # an account with no balance: its transfers fail


@pytest.fixture(scope="module")
def anvil():
    with Anvil() as a:
        yield a


@pytest.fixture
def station(anvil):
    st = gs.Station(anvil.url, gs.DEFAULT_FUNDER_KEY, 10 * 10**18, 5 * 10**18, ["peaq"])
    srv = gs.make_server(st)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield st
    srv.shutdown()
    srv.server_close()


def new_wallet(anvil, wei: int = 0) -> str:
    addr = Web3.to_checksum_address("0x" + os.urandom(20).hex())
    anvil.rpc("anvil_setBalance", [addr, hex(wei)])
    return addr


def code_of(fn, *args, **kw) -> str:
    with pytest.raises(ApiError) as e:
        fn(*args, **kw)
    return e.value.code


def test_enrol_and_fund_with_a_totp_code(anvil, station):
    s = requests.Session()
    setup = setup_faucet_2fa(s, OWNER, station.base_url)
    assert setup["owner_address"] == OWNER and setup["otpauth_uri"].startswith("otpauth://totp/")
    assert setup["qr_image_url"].endswith(".svg")
    secret = setup["otpauth_uri"].split("secret=")[1].split("&")[0]
    assert code_of(fund_from_gas_station, s, OWNER, new_wallet(anvil), "peaq", gs.totp(secret),
                   station.base_url) == "2FA_NOT_ACTIVE"
    assert code_of(confirm_faucet_2fa, s, OWNER, station.base_url, "99999x") == "INVALID_2FA"
    confirm_faucet_2fa(s, OWNER, station.base_url, gs.totp(secret))

    target = new_wallet(anvil)
    r = fund_from_gas_station(s, OWNER, target, "peaq", gs.totp(secret), station.base_url, request_id="req-1")
    assert r["status"] == "success" and r["funded_amount"] == str(10 * 10**18)
    assert int(anvil.rpc("eth_getBalance", [target, "latest"]), 16) == 10 * 10**18
    rcpt = anvil.rpc("eth_getTransactionReceipt", [r["tx_hash"]])
    assert int(rcpt["status"], 16) == 1 and rcpt["to"].lower() == target.lower()
    call = state(station.base_url)["calls"][-1]
    assert call["body"] == {"ownerAddress": OWNER, "targetWalletAddress": target, "chainId": "peaq",
                            "twoFactorCode": gs.totp(secret), "requestId": "req-1"}
    assert "x-api-key" not in call["headers"]

    # the same request id again: not a second funding
    assert code_of(fund_from_gas_station, s, OWNER, target, "peaq", gs.totp(secret), station.base_url,
                   request_id="req-1") == "REQUEST_ALREADY_PROCESSED"
    assert int(anvil.rpc("eth_getBalance", [target, "latest"]), 16) == 10 * 10**18
    # now above the minimum: skipped
    r = fund_from_gas_station(s, OWNER, target, "peaq", gs.totp(secret), station.base_url)
    assert r == {"status": "skipped", "current_balance": str(10 * 10**18), "min_gas_balance": str(5 * 10**18)}
    assert len(state(station.base_url)["fundings"]) == 1


def test_every_refusal_reaches_the_sdk_with_its_code(anvil, station):
    s = requests.Session()
    url = station.base_url
    assert code_of(setup_faucet_2fa, s, "not-an-address", url) == "INVALID_OWNER_ADDRESS"
    control(url, "faults", {"path": "/2fa/setup", "qrFails": True})
    assert code_of(setup_faucet_2fa, s, OWNER, url) == "QR_GENERATION_FAILED"
    assert code_of(confirm_faucet_2fa, s, OWNER.lower().replace("0x7", "0x8"), url, "123456") == "2FA_NOT_CONFIGURED"
    secret = enrol(url, OWNER)
    fund = lambda target, code=None, rid=None: fund_from_gas_station(  # noqa: E731
        s, OWNER, target, "peaq", code or gs.totp(secret), url, request_id=rid)
    assert code_of(fund_from_gas_station, s, "0x" + "ab" * 20, new_wallet(anvil), "peaq", "123456",
                   url) == "2FA_NOT_CONFIGURED"
    assert code_of(fund, new_wallet(anvil), "99999x") == "INVALID_2FA"

    control(url, "config", {"rate_limit": 1, "rate_window": 3600})
    fund(new_wallet(anvil))
    assert code_of(fund, new_wallet(anvil)) == "RATE_LIMITED"
    control(url, "config", {"rate_limit": 0})

    control(url, "config", {"owner_cap_wei": 15 * 10**18})
    assert code_of(fund, new_wallet(anvil)) == "CAP_EXCEEDED_OWNER"
    control(url, "config", {"owner_cap_wei": 0, "wallet_cap_wei": 15 * 10**18})
    w = new_wallet(anvil)
    fund(w)
    anvil.rpc("anvil_setBalance", [w, "0x0"])
    assert code_of(fund, w) == "CAP_EXCEEDED_WALLET"
    control(url, "config", {"wallet_cap_wei": 0})

    control(url, "config", {"funder_key": EMPTY_KEY})
    assert code_of(fund, new_wallet(anvil)) == "TRANSFER_FAILED"
    control(url, "config", {"funder_key": gs.DEFAULT_FUNDER_KEY})

    # a request id in flight: DUPLICATE_REQUEST for the second caller
    control(url, "faults", {"path": "/faucet/fund", "delaySeconds": 1.5})
    w = new_wallet(anvil)
    first = threading.Thread(target=lambda: fund(w, rid="dup-1"))
    first.start()
    import time
    deadline = time.monotonic() + 10
    while "dup-1" not in state(url)["requests"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert code_of(fund, w, rid="dup-1") == "DUPLICATE_REQUEST"
    first.join()

    # answers the SDK cannot read
    control(url, "faults", {"path": "/faucet/fund", "drop": True})
    assert code_of(fund, new_wallet(anvil)) == "NETWORK_ERROR"
    control(url, "faults", {"path": "/faucet/fund", "status": 502, "body": "<html>bad gateway</html>"})
    assert code_of(fund, new_wallet(anvil)) == "INVALID_RESPONSE"
    control(url, "faults", {"path": "/faucet/fund", "status": 200, "json": {"status": "success", "code": "SUCCESS"}})
    assert code_of(fund, new_wallet(anvil)) == "UNEXPECTED_RESPONSE"
    control(url, "faults", {"path": "/faucet/fund", "status": 400, "json": {"message": "no code"}})
    assert code_of(fund, new_wallet(anvil)) == "UNEXPECTED_RESPONSE"

    # five invalid codes lock the owner's 2FA
    for _ in range(gs.LOCK_AFTER_INVALID - 1):
        assert code_of(fund, new_wallet(anvil), "99999x") == "INVALID_2FA"
    assert code_of(fund, new_wallet(anvil), "99999x") == "INVALID_2FA"
    assert code_of(fund, new_wallet(anvil)) == "2FA_LOCKED"
    with pytest.raises(ValidationError):
        fund_from_gas_station(s, OWNER, new_wallet(anvil), "peaq", "", url)


def test_runs_as_a_program_printing_one_json_line(anvil):
    p = subprocess.Popen([sys.executable, str(HERE / "gas_station_server.py"), "--rpc-url", anvil.url],
                         stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(p.stdout.readline())
        assert info["pid"] == p.pid
        with urllib.request.urlopen(info["url"] + "/__mock__/state", timeout=10) as r:
            assert json.loads(r.read())["fundings"] == []
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0
