"""Gas end to end: the node's low-balance warning on /diagnostics and ~/status, and
~/fund_from_gas_station relaying an operator's one-time 2FA code to a local Gas Station
(test/gas_station/gas_station_server.py, kept honest by SDK 0.12.1 in test_gas_station_sdk.py) that funds the
machine through a real anvil. The owner enrols with the SDK's own setup/confirm calls (the
operator's tools); the test computes each TOTP code as an authenticator app does."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "gas_station"))

from peaqos_harness import NodeProcess, call_service, poll_until, wait_until  # noqa: E402

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from eth_account import Account  # noqa: E402

from peaqos_node.srv import FundFromGasStation, GetStatus, SubmitEvent  # noqa: E402

import gas_station_server as gs  # noqa: E402
from gas_station_fixtures import Anvil, StationProcess, control, enrol, state  # noqa: E402

OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ETH = 10**18
RESERVE = 2 * ETH
FUND = 10 * ETH
OK, WARN, STALE = 0, 1, 3
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Gas:
    """The node under test, its chain, its Gas Station and an rclpy caller."""

    def __init__(self, ros_node, tmp: Path, anvil: Anvil, station: StationProcess, secret: str, **params):
        self.ros_node, self.tmp, self.anvil, self.station, self.secret = ros_node, tmp, anvil, station, secret
        self.key = Account.create()
        self.address = self.key.address
        self.params = {
            "policy_file": str(self._policy()),
            "data_dir": str(tmp / "data"),
            "chain.rpc_urls": f"['{anvil.url}']",
            "chain.receipt_timeout": "30.0",
            "chain.poll_interval": "0.05",
            "gas.reserve_wei": f"'{RESERVE}'",
            "gas.check_interval": "0.2",
            "gas_station.url": station.url,
            "gas_station.owner_address": f"'{OWNER}'",
            "gas_station.timeout": "5.0",
        }
        self.params.update(params)
        self.diag = None
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.node: NodeProcess | None = None
        self.fund_cli = ros_node.create_client(FundFromGasStation, "/peaqos_node/fund_from_gas_station")
        self.status_cli = ros_node.create_client(GetStatus, "/peaqos_node/status")

    def _policy(self) -> Path:
        p = self.tmp / "map.yaml"
        p.write_text("schema_version: 1\ntopics:\n  - topic: /t/gas_unused\n    type: std_msgs/msg/String\n")
        return p

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            if st.name == "peaqos_node: gas":
                self.diag = st

    def start(self, name: str = "node") -> "Gas":
        self.node = NodeProcess(self.tmp, self.params, env={"PEAQOS_PRIVATE_KEY": self.key.key.hex()},
                                name=name).start()
        self.node.wait_for_log("subscribed to /t/gas_unused")
        return self

    def stop(self) -> None:
        if self.node is not None:
            assert self.node.stop() == 0, self.node.output()

    def fund(self, code: str | None = None) -> FundFromGasStation.Response:
        req = FundFromGasStation.Request(two_factor_code=gs.totp(self.secret) if code is None else code)
        return call_service(self.ros_node, self.fund_cli, req, timeout=60, proc=self.node)

    def status(self) -> GetStatus.Response:
        return call_service(self.ros_node, self.status_cli, GetStatus.Request(), timeout=30, proc=self.node)

    def wait_diag(self, what: str, pred, timeout: float = 30.0):
        def seen() -> bool:
            if self.diag is None:
                return False
            level = self.diag.level[0] if isinstance(self.diag.level, bytes) else self.diag.level
            return pred(level, {kv.key: kv.value for kv in self.diag.values}, self.diag.message)
        wait_until(seen, timeout, lambda: f"/diagnostics gas {what} (last: {self.diag})", nodes=self.node,
                   spin=self.ros_node)
        level = self.diag.level[0] if isinstance(self.diag.level, bytes) else self.diag.level
        return level, {kv.key: kv.value for kv in self.diag.values}, self.diag.message

    def balance(self) -> int:
        return self.anvil.balance(self.address)

    def secrets_absent(self, codes: list[str]) -> None:
        """No 2FA code in the node's log or any file of its data dir."""
        blobs = [self.node.output().encode()]
        for f in (self.tmp / "data").rglob("*"):
            if f.is_file():
                blobs.append(f.read_bytes())
        for code in codes:
            # a TOTP code is 6 digits, which can occur by chance inside hex or numbers: look for it
            # as the value of a field or quoted
            for b in blobs:
                for pat in (f'"{code}"', f"two_factor_code: {code}", f"twoFactorCode", f"={code}"):
                    assert pat.encode() not in b, f"{pat} found"


@pytest.fixture(scope="module")
def anvil():
    with Anvil() as a:
        yield a


@pytest.fixture(scope="module")
def station(anvil):
    with StationProcess(anvil.url, "--fund-amount-wei", str(FUND), "--min-gas-balance-wei", str(5 * ETH)) as s:
        yield s


@pytest.fixture(scope="module")
def secret(station):
    return enrol(station.url, OWNER)


@pytest.fixture
def gas(ros_node, tmp_path, anvil, station, secret):
    control(station.url, "config", {"rate_limit": 0, "owner_cap_wei": 0, "wallet_cap_wei": 0,
                                    "funder_key": gs.DEFAULT_FUNDER_KEY, "min_gas_balance_wei": 5 * ETH,
                                    "unlock": OWNER, "activate": OWNER})
    g = Gas(ros_node, tmp_path, anvil, station, secret).start()
    yield g
    g.stop()


def test_low_balance_warns_and_a_funding_clears_it(gas):
    codes = []
    level, values, message = gas.wait_diag("WARN for the empty balance", lambda lv, v, m: lv == WARN)
    assert values["balance_wei"] == "0" and values["required_wei"] == str(RESERVE) and values["low"] == "true"
    assert values["address"] == gas.address and gas.address in message and "~/fund_from_gas_station" in message
    st = gas.status()
    assert (st.gas_low, st.gas_balance_wei, st.gas_required_wei, st.gas_pending_intents) == (True, "0", str(RESERVE), 0)

    codes.append(gs.totp(gas.secret))
    r = gas.fund(codes[-1])
    assert r.success, (r.error_code, r.error_field, r.message)
    assert (r.status, r.funded_amount, r.balance_wei, r.repeated) == ("success", str(FUND), str(FUND), False)
    assert UUID4.match(r.request_id) and r.block_number > 0 and r.tx_hash.startswith("0x")
    assert gas.balance() == FUND
    rcpt = gas.anvil.rpc("eth_getTransactionReceipt", [r.tx_hash])
    assert int(rcpt["blockNumber"], 16) == r.block_number and rcpt["to"].lower() == gas.address.lower()
    # the station saw exactly what the SDK sends, for this machine
    call = state(gas.station.url)["calls"][-1]
    assert call["path"] == "/faucet/fund" and call["body"] == {
        "ownerAddress": OWNER, "targetWalletAddress": gas.address, "chainId": "peaq",
        "twoFactorCode": codes[-1], "requestId": r.request_id}

    gas.wait_diag("OK once funded", lambda lv, v, m: lv == OK and v["balance_wei"] == str(FUND))
    st = gas.status()
    assert not st.gas_low and st.gas_balance_wei == str(FUND) and st.gas_error == ""
    done = json.loads((gas.tmp / "data/gas_station/done" / f"{r.request_id}.json").read_text())
    assert done["result"] == "funded" and done["outcome"]["tx_hash"] == r.tx_hash
    assert not (gas.tmp / "data/gas_station/pending.json").exists()

    # enough balance now: the station skips, nothing is sent
    codes.append(gs.totp(gas.secret))
    r = gas.fund(codes[-1])
    assert r.success and r.status == "skipped" and r.current_balance == str(FUND), r
    assert r.min_gas_balance == str(5 * ETH) and gas.balance() == FUND

    # queued work counts: with mining paused, three submitted events wait in the outbox
    gas.anvil.rpc("evm_setAutomine", [False])
    try:
        cli = gas.ros_node.create_client(SubmitEvent, "/peaqos_node/submit_event")
        ts = int(time.time()) - 60
        for k in range(3):
            e = call_service(gas.ros_node, cli, SubmitEvent.Request(
                machine_id="7", event_type=1, value="1", currency="", timestamp=ts + k, no_wait=True),
                proc=gas.node)
            assert e.success, e
        _, v, _ = gas.wait_diag("three queued transactions", lambda lv, v, m: v["pending_intents"] == "3")
        assert int(v["required_wei"]) == RESERVE + int(v["pending_value_wei"]) + int(v["pending_gas"]) * int(
            v["fee_per_gas_wei"]) and int(v["pending_gas"]) > 0 and int(v["required_wei"]) > RESERVE
        assert gas.status().gas_pending_intents == 3
    finally:
        gas.anvil.rpc("evm_setAutomine", [True])
        gas.anvil.rpc("evm_mine", [])
    gas.wait_diag("the queue drained", lambda lv, v, m: v["pending_intents"] == "0" and lv == OK)

    # the balance falls below the reserve again: the warning comes back
    gas.anvil.rpc("anvil_setBalance", [gas.address, hex(ETH)])
    gas.wait_diag("WARN again", lambda lv, v, m: lv == WARN and v["balance_wei"] == str(ETH))
    assert "balance" in gas.node.output() and "is below" in gas.node.output()
    gas.secrets_absent(codes)


def test_a_retried_call_after_a_lost_answer_is_not_a_second_funding(gas):
    url = gas.station.url
    before = len(state(url)["fundings"])
    control(url, "faults", {"path": "/faucet/fund", "drop": True})
    codes = [gs.totp(gas.secret)]
    r = gas.fund(codes[-1])
    assert (r.success, r.error_code, r.error_field) == (False, "NETWORK_ERROR", "gas_station.url"), r
    assert UUID4.match(r.request_id) and "kept" in r.message
    lost = r.request_id
    # the station did fund: only the answer was lost
    assert len(state(url)["fundings"]) == before + 1 and gas.balance() == FUND
    pending = json.loads((gas.tmp / "data/gas_station/pending.json").read_text())
    assert pending["request_id"] == lost and "two_factor_code" not in json.dumps(pending)

    # a restart in between: the request id is on disk
    gas.stop()
    gas.start(name="restarted")
    # the station would fund this wallet again for a new request id (below its minimum now)
    control(url, "config", {"min_gas_balance_wei": 100 * ETH})
    codes.append(gs.totp(gas.secret))
    r = gas.fund(codes[-1])
    assert (r.success, r.error_code, r.request_id) == (False, "REQUEST_ALREADY_PROCESSED", lost), r
    assert r.error_field == "request_id" and "nothing was funded again" in r.message
    assert len(state(url)["fundings"]) == before + 1 and gas.balance() == FUND
    assert state(url)["calls"][-1]["body"]["requestId"] == lost
    assert not (gas.tmp / "data/gas_station/pending.json").exists()
    # the slot is free: the next call is a new request (and funds, the station's minimum being high)
    codes.append(gs.totp(gas.secret))
    r = gas.fund(codes[-1])
    assert r.success and r.status == "success" and r.request_id != lost and not r.repeated, r
    assert gas.balance() == 2 * FUND

    # still processing at the station when the node gave up (timeout 5 s): DUPLICATE_REQUEST keeps
    # the id too, and once the station has finished the same id is answered as processed
    gas.anvil.rpc("anvil_setBalance", [gas.address, "0x0"])
    control(url, "faults", {"path": "/faucet/fund", "delaySeconds": 8})
    codes.append(gs.totp(gas.secret))
    r = gas.fund(codes[-1])
    assert (r.success, r.error_code) == (False, "NETWORK_ERROR"), r
    slow = r.request_id
    codes.append(gs.totp(gas.secret))
    r = gas.fund(codes[-1])
    assert (r.error_code, r.error_field, r.request_id) == ("DUPLICATE_REQUEST", "request_id", slow), r
    wait_until(lambda: state(url)["requests"][slow]["state"] == "done", 30, "the slow funding to finish")
    codes.append(gs.totp(gas.secret))
    r = gas.fund(codes[-1])
    assert (r.error_code, r.request_id) == ("REQUEST_ALREADY_PROCESSED", slow), r
    assert gas.balance() == FUND and len(state(url)["fundings"]) == before + 3
    gas.secrets_absent(codes)


REFUSALS = [
    # (station setup, the code the node answers, the field it names)
    ({"config": {"rate_limit": 1, "rate_window": 3600}, "first_ok": True}, "RATE_LIMITED", ""),
    ({"config": {"owner_cap_wei": FUND - 1}}, "CAP_EXCEEDED_OWNER", "gas_station.owner_address"),
    ({"config": {"wallet_cap_wei": FUND - 1}}, "CAP_EXCEEDED_WALLET", "target_wallet_address"),
    ({"config": {"funder_key": "0x" + "11" * 32}}, "TRANSFER_FAILED", ""),
    ({"config": {"forget": OWNER}}, "2FA_NOT_CONFIGURED", "gas_station.owner_address"),
    ({"config": {"deactivate": OWNER}}, "2FA_NOT_ACTIVE", "gas_station.owner_address"),
    ({"code": "99999x"}, "INVALID_2FA", "two_factor_code"),
    ({"fault": {"status": 409, "json": {"code": "DUPLICATE_REQUEST", "message": "busy"}}}, "DUPLICATE_REQUEST",
     "request_id"),
    ({"fault": {"status": 502, "body": "<html>bad gateway</html>"}}, "INVALID_RESPONSE", "gas_station.url"),
    ({"fault": {"status": 200, "json": {"status": "success", "code": "SUCCESS"}}}, "UNEXPECTED_RESPONSE",
     "gas_station.url"),
    ({"fault": {"status": 418, "json": {"code": "NEW_STATION_CODE", "message": "a code the SDK does not know"}}},
     "NEW_STATION_CODE", ""),
    ({"code": ""}, "VALIDATION_ERROR", "two_factor_code"),
]


def test_every_refusal_is_named(gas):
    url = gas.station.url
    codes = []
    for setup, code, field in REFUSALS:
        control(url, "config", {"rate_limit": 0, "owner_cap_wei": 0, "wallet_cap_wei": 0,
                                "funder_key": gs.DEFAULT_FUNDER_KEY, "min_gas_balance_wei": 1000 * ETH})
        if OWNER.lower() not in {k for k in state(url)["owners"]}:
            enrolled = enrol(url, OWNER)
            gas.secret = enrolled
        control(url, "config", {"activate": OWNER, "unlock": OWNER})
        if setup.get("first_ok"):
            control(url, "config", setup["config"])
            codes.append(gs.totp(gas.secret))
            assert gas.fund(codes[-1]).success
        elif "config" in setup:
            control(url, "config", setup["config"])
        if "fault" in setup:
            control(url, "faults", {"path": "/faucet/fund", **setup["fault"]})
        balance = gas.balance()
        codes.append(setup.get("code", gs.totp(gas.secret)))
        r = gas.fund(codes[-1])
        assert (r.success, r.error_code, r.error_field) == (False, code, field), (setup, r)
        assert r.message, r
        assert gas.balance() == balance, code
        assert bool(r.request_id) == (code != "VALIDATION_ERROR"), r
        if code in ("DUPLICATE_REQUEST", "INVALID_RESPONSE", "UNEXPECTED_RESPONSE"):
            # unknown outcome: kept for the next call (which the next case's call repeats)
            assert json.loads((gas.tmp / "data/gas_station/pending.json").read_text())["request_id"] == r.request_id
        else:
            assert not (gas.tmp / "data/gas_station/pending.json").exists(), code
    # five invalid codes lock the owner's 2FA at the station
    control(url, "config", {"unlock": OWNER})
    for _ in range(gs.LOCK_AFTER_INVALID):
        assert gas.fund("99999x").error_code == "INVALID_2FA"
    r = gas.fund()
    assert (r.error_code, r.error_field) == ("2FA_LOCKED", "two_factor_code"), r
    gas.secrets_absent([c for c in codes if c])


def test_without_a_station_configured_the_service_names_the_parameter(ros_node, tmp_path, anvil, station, secret):
    g = Gas(ros_node, tmp_path, anvil, station, secret, **{"gas_station.url": "''"}).start()
    try:
        r = g.fund()
        assert (r.success, r.error_code, r.error_field) == (False, "CONFIG_INVALID", "gas_station.url"), r
        assert r.request_id == "" and not (tmp_path / "data/gas_station/pending.json").exists()
    finally:
        g.stop()
