#!/usr/bin/env python3
"""Local peaqOS test chain: anvil + both contract generations at their real addresses.

What it does
------------
* Starts the pinned anvil (``node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil``, installed by
  ``npm ci`` in ``test/chain``) on ``127.0.0.1`` on a free port with ``--chain-id 3338``
  (peaq mainnet; ``9990`` = agung can be chosen), waits for ``eth_chainId``.
* Places the compiled stand-ins (``artifacts/<Contract>.json``) with ``anvil_setCode``:

  - precompiles: DID ``0x…0800``, Batch ``0x…0805``, PEAQ ERC-20 ``0x…0809``;
  - gen 2 at the SDK 0.12.1 deployment-record addresses (``peaq-mainnet`` for 3338,
    ``agung-2026-08-28`` for 9990; agung records no 2.0 EventRegistry, so the mainnet
    EventRegistry address is used there too), so the *unmodified* SDK 0.12.1 works;
  - gen 1 at the ``peaq-evm-smart-contracts/addresses/peaqos.json`` addresses (SPEC §1.3).

  No constructor runs under ``anvil_setCode``: every contract is set up by the transactions in
  :meth:`TestChain._setup_contracts` (``initialize``/``harnessInit``, InfoDesk peers, …), sent
  from the harness admin (anvil account #9, unlocked).
* Funds anvil accounts #0…#8 with native balance (``anvil_setBalance``) and PEAQ-token balance
  (``PeaqToken.harnessSetBalance``).

Interfaces
----------
* ``python harness.py serve [--chain-id N] [--port P] [--block-time S] [--stdin-control]``
  prints ONE JSON line (see :meth:`TestChain.describe`) and runs until SIGTERM/SIGINT.
  While serving, SIGUSR1 stops anvil keeping its state and SIGUSR2 brings it back on the same
  port (each answered by a JSON line ``{"event": "stopped"|"restarted", ...}``); with
  ``--stdin-control`` the same is done by the stdin lines ``stop``/``restart``/``describe``/
  ``quit``, and stdin EOF quits (so the harness dies with the process that spawned it).
* Python: ``with TestChain() as chain: chain.w3 …``; ``chain.stop()`` / ``chain.restart()``
  keep the whole chain state (``anvil_dumpState`` before stopping, ``anvil_loadState`` after
  starting again on the same port), so a test can take the RPC down and bring it back.
* pytest: fixtures ``test_chain`` (one chain per session), ``chain`` (the session chain with
  an ``evm_snapshot``/``evm_revert`` around each test) and ``fresh_chain`` (a private chain
  per test, for stop/restart tests). Load with ``pytest_plugins = ("harness",)``.
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.types import RPCEndpoint

HERE = Path(__file__).resolve().parent
ARTIFACTS_DIR = HERE / "artifacts"
ANVIL_BIN = HERE / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

MAINNET_CHAIN_ID = 3338
AGUNG_CHAIN_ID = 9990

# anvil's default mnemonic ("test test … junk"), accounts #0..#9.
ANVIL_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
]
ADMIN_INDEX = 9
TEST_ACCOUNT_COUNT = 9

NATIVE_FUNDING_WEI = 1_000_000 * 10**18
PEAQ_TOKEN_FUNDING_WEI = 1_000_000 * 10**18
# Bond per tier (Entry, Basic, Pro) in PEAQ wei. The live values come from an oracle; these are
# test values only.
TIER_BONDS_WEI = (10 * 10**18, 25 * 10**18, 50 * 10**18)
PEAQ_PROTOCOL_CHAIN_ID = 1  # InfoDesk.localChainId(): peaq's protocol chain id (SPEC §1.1)

PRECOMPILES = {
    "did": "0x0000000000000000000000000000000000000800",
    "batch": "0x0000000000000000000000000000000000000805",
    "peaq_token": "0x0000000000000000000000000000000000000809",
}

GEN2_RECORDS: dict[int, dict[str, str]] = {
    MAINNET_CHAIN_ID: {
        "deployment_id": "peaq-mainnet",
        "info_desk": "0x6C7426ada37212D94477Ac4CFcA43A38177D6A82",
        "machine_registry": "0x64b93Cc29b251fAFa83BD110cDB1C24207f85536",
        "machine_state_and_sync": "0xcD1917FB2a56459AcA34FDD118e08776dE0890f2",
        "machine_subscription": "0x9e37AD189c334C92e6B8a812Ca4c02f35Ac43895",
        "cross_chain_mirror": "0x71DCB313977d6884212395505f081a2991Bfe8E5",
        "machine_bridge_adapter": "0x791087c35484b567c53f392a624d2e4BaDcC53DF",
        "subscription_token_provision_pool": "0x7088Cf400081428a41a4287B75AC633071c0e92A",
        "event_registry": "0xA1e7F1d7B24dAb55Dc92491e6d9B89F6E925Ad1e",
    },
    AGUNG_CHAIN_ID: {
        "deployment_id": "agung-2026-08-28",
        "info_desk": "0x72b66AF120c55371cA6e5Ce38D4e10dF1bA30Bb1",
        "machine_registry": "0x538da35489B1F0035799a8351E67835ae4ABb377",
        "machine_state_and_sync": "0xA7D33726232aae30622643a18047f0Ca3e159da9",
        "machine_subscription": "0xaDCc5dD8CD57E3198B881c3388F25D2fD69B5aDc",
        "cross_chain_mirror": "0xd5F8d5944c5d488B1cD698D642FC8156a8CD0c0c",
        "machine_bridge_adapter": "0x0406e7bE522AEa626aee54f6258D415215e59F76",
        "subscription_token_provision_pool": "0x8A3692Ad0AcF79BB89413514Af9957d95032e19B",
        # agung publishes no 2.0 EventRegistry (SDK 0.12.1 raises DEPLOYMENT_UNAVAILABLE);
        # the stand-in still sits at the mainnet address for direct (non-SDK) use.
        "event_registry": "0xA1e7F1d7B24dAb55Dc92491e6d9B89F6E925Ad1e",
    },
}

GEN1_RECORDS: dict[int, dict[str, str]] = {
    MAINNET_CHAIN_ID: {
        "identity_registry": "0xb53Af985765031936311273599389b5B68aC9956",
        "identity_staking": "0x11c05A650704136786253e8685f56879A202b1C7",
        "event_registry": "0x43c6AF2E14dc1327dc3cc6c7117D1CD72fffEcbA",
        "machine_nft": "0x2943F80e9DdB11B9Dd275499C661Df78F5F691F9",
        "machine_account_factory": "0x4A808d5A90A2c91739E92C70aF19924e0B3D527f",
        "machine_nft_adapter": "0x9AD5408702EC204441A88589B99ADfC2514AFAE6",
    },
    AGUNG_CHAIN_ID: {
        "identity_registry": "0x9E9463a65c7B74623b3b6Cdc39F71be7274e5971",
        "identity_staking": "0x55f336714aDb0749DbFE33b057a1702405564E3d",
        "event_registry": "0x2DAD8905380993940e340C5cE6d313d5c2780040",
        "machine_nft": "0xB41C2A4f1c19b6B06beaAce0F5CD8439e77C4b1c",
        "machine_account_factory": "0x65a4DfEB799dFf8CF15f13816d648a7805d6b1F9",
    },
}

# InfoDesk.peer() keys, exactly as SDK 0.12.1 preflight.py derives them.
PEER_KEY_NAMES = {
    "machine_registry": "MACHINE_REGISTRY",
    "machine_subscription": "MACHINE_SUBSCRIPTION",
    "machine_state_and_sync": "MACHINE_STATE_AND_SYNC",
    "cross_chain_mirror": "CROSS_CHAIN_MIRROR",
    "machine_bridge_adapter": "MACHINE_BRIDGE_ADAPTER",
    "subscription_token_provision_pool": "SUBSCRIPTION_TOKEN_PROVISION_POOL",
}

# Gen-1 NFT bridge (SDK 0.11.2 `constants.LAYERZERO_EIDS`); the stand-in adapter's LayerZero fee, and
# the peer it names for Base (the address a test places MachineNFTBase at on its destination chain).
LAYERZERO_EIDS = {"peaq": 30302, "base": 30184}
BRIDGE_FEE_WEI = 10**15
BASE_NFT_PEER = "0x000000000000000000000000000000000000ba5e"

EVENT_LIMITS = {"max_metadata_size": 1024, "currency_min_len": 3, "currency_max_len": 10, "max_query_limit": 100}

STARTUP_TIMEOUT_S = 30.0


class HarnessError(RuntimeError):
    """The test chain could not be started, set up or reached."""


def load_artifact(name: str) -> dict[str, Any]:
    """``artifacts/<name>.json`` as ``{abi, bytecode, deployedBytecode}``."""
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise HarnessError(f"artifact {path} missing: run test/chain/build.sh") from err


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class TestChain:
    """One anvil process carrying the peaqOS test contracts."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        chain_id: int = MAINNET_CHAIN_ID,
        port: int | None = None,
        anvil_bin: Path | str | None = None,
        workdir: Path | str | None = None,
        block_time: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        if chain_id not in (MAINNET_CHAIN_ID, AGUNG_CHAIN_ID):
            raise HarnessError(f"chain_id {chain_id} unsupported: use {MAINNET_CHAIN_ID} or {AGUNG_CHAIN_ID}")
        self.chain_id = chain_id
        self.block_time = block_time
        self.extra_args = list(extra_args or [])
        self.stopped_on_request = False
        self._fixed_port = port is not None
        self.port = port or _free_port()
        self.anvil_bin = Path(anvil_bin) if anvil_bin else ANVIL_BIN
        if not self.anvil_bin.exists():
            raise HarnessError(f"anvil binary {self.anvil_bin} missing: run `npm ci` in {HERE}")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="peaqos-testchain-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "anvil.log"
        self.state_path = self.workdir / "state.hex"
        self.gen2 = dict(GEN2_RECORDS[chain_id])
        self.gen1 = dict(GEN1_RECORDS[chain_id])
        self.admin = Account.from_key(ANVIL_KEYS[ADMIN_INDEX]).address
        self.accounts = [Account.from_key(k) for k in ANVIL_KEYS[:TEST_ACCOUNT_COUNT]]
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))

    # ------------------------------------------------------------------ lifecycle
    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "TestChain":
        """Start anvil and place + set up every contract. Returns self."""
        for attempt in range(3):
            try:
                self._spawn()
                break
            except HarnessError:
                # A free port picked by us can be taken by someone else before anvil binds it.
                if self._fixed_port or attempt == 2:
                    raise
                self.port = _free_port()
                self.w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))
        self._place_code()
        self._setup_contracts()
        self._fund_accounts()
        self._apply_mining_mode()
        return self

    def _apply_mining_mode(self) -> None:
        """Setup always runs with automine; ``block_time`` switches to interval mining after."""
        if self.block_time is not None:
            self._rpc("evm_setAutomine", [False])
            self._rpc("evm_setIntervalMining", [self.block_time])

    def stop(self, keep_state: bool = True) -> None:
        """Stop anvil; with ``keep_state`` the chain state is saved for :meth:`restart`."""
        if not self.running:
            return
        if keep_state:
            dump = self.w3.provider.make_request(RPCEndpoint("anvil_dumpState"), [])
            if "result" not in dump:
                raise HarnessError(f"anvil_dumpState failed: {dump.get('error')}")
            self.state_path.write_text(dump["result"])
        self._terminate()
        self.stopped_on_request = True

    def restart(self) -> "TestChain":
        """Start anvil again on the same port and load the state saved by :meth:`stop`."""
        if self.running:
            self.stop(keep_state=True)
        if not self.state_path.exists():
            raise HarnessError(f"no saved state at {self.state_path}: call stop() first")
        # The state is loaded by anvil itself before it listens (--load-state): loading it over RPC
        # after the start left a window in which a client's transaction landed in a fresh chain's
        # block 1 and then vanished under the loaded state (the campaign saw an included event
        # disappear that way).
        hexed = self.state_path.read_text().strip()
        try:
            state_json = gzip.decompress(bytes.fromhex(hexed.removeprefix("0x")))
        except (ValueError, OSError) as err:
            raise HarnessError(f"{self.state_path}: not an anvil_dumpState blob ({err})") from None
        state_file = self.workdir / "state.json"
        state_file.write_bytes(state_json)
        self._spawn(["--load-state", str(state_file)])
        self.stopped_on_request = False
        self._apply_mining_mode()
        return self

    def close(self) -> None:
        """Stop anvil for good and remove the work directory if the harness created it."""
        self._terminate()
        if self._own_workdir:
            for p in sorted(self.workdir.glob("*")):
                p.unlink(missing_ok=True)
            try:
                self.workdir.rmdir()
            except OSError:
                pass

    def __enter__(self) -> "TestChain":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, more: list[str] | None = None) -> None:
        cmd = [
            str(self.anvil_bin),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--accounts", "10",
            "--balance", "10000",
            *self.extra_args,
            *(more or []),
        ]

        self._log_file = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            cmd, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        probe = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 1}, exception_retry_configuration=None))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._terminate()
                raise HarnessError(f"anvil exited with {code} on port {self.port}; see {self.log_path}")
            try:
                if int(probe.eth.chain_id) == self.chain_id:
                    return
            except Exception:  # not listening yet
                time.sleep(0.05)
        self._terminate()
        raise HarnessError(f"anvil on port {self.port} did not answer eth_chainId within {STARTUP_TIMEOUT_S}s")

    def _terminate(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # ------------------------------------------------------------------ setup
    def _rpc(self, method: str, params: list[Any]) -> Any:
        resp = self.w3.provider.make_request(RPCEndpoint(method), params)
        if "error" in resp:
            raise HarnessError(f"{method} failed: {resp['error']}")
        return resp.get("result")

    def contract(self, artifact: str, address: str):
        """A web3 contract for ``artifacts/<artifact>.json`` at ``address``."""
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(artifact)["abi"])

    def placements(self) -> list[tuple[str, str]]:
        """(artifact, address) of every contract the harness places."""
        g1, g2 = self.gen1, self.gen2
        return [
            ("DIDPrecompile", PRECOMPILES["did"]),
            ("BatchPrecompile", PRECOMPILES["batch"]),
            ("PeaqToken", PRECOMPILES["peaq_token"]),
            ("InfoDesk", g2["info_desk"]),
            ("MachineRegistry", g2["machine_registry"]),
            ("MachineStateAndSync", g2["machine_state_and_sync"]),
            ("MachineSubscription", g2["machine_subscription"]),
            ("CrossChainMirror", g2["cross_chain_mirror"]),
            ("InertPeer", g2["machine_bridge_adapter"]),
            ("InertPeer", g2["subscription_token_provision_pool"]),
            ("EventRegistryV2", g2["event_registry"]),
            ("IdentityRegistry", g1["identity_registry"]),
            ("IdentityStaking", g1["identity_staking"]),
            ("MachineNFT", g1["machine_nft"]),
            ("EventRegistryV1", g1["event_registry"]),
            ("MachineAccountFactory", g1["machine_account_factory"]),
            *([("MachineNFTAdapter", g1["machine_nft_adapter"])] if "machine_nft_adapter" in g1 else []),
        ]

    def _place_code(self) -> None:
        for artifact, address in self.placements():
            self._rpc("anvil_setCode", [Web3.to_checksum_address(address), load_artifact(artifact)["deployedBytecode"]])

    def _admin_tx(self, fn: Any) -> None:
        tx_hash = fn.transact({"from": self.admin})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        if receipt["status"] != 1:
            raise HarnessError(f"setup transaction {fn.fn_name} to {fn.address} reverted")

    def _setup_contracts(self) -> None:
        g1, g2, admin = self.gen1, self.gen2, self.admin
        self._admin_tx(self.contract("PeaqToken", PRECOMPILES["peaq_token"]).functions.harnessInit(admin))

        info = self.contract("InfoDesk", g2["info_desk"])
        self._admin_tx(info.functions.initialize(admin))
        for role, key_name in PEER_KEY_NAMES.items():
            self._admin_tx(info.functions.setPeer(Web3.keccak(text=key_name), Web3.to_checksum_address(g2[role])))
        self._admin_tx(info.functions.setPeaqToken(Web3.to_checksum_address(PRECOMPILES["peaq_token"])))
        self._admin_tx(info.functions.setLocalChainId(PEAQ_PROTOCOL_CHAIN_ID))
        info_desk = Web3.to_checksum_address(g2["info_desk"])
        for artifact, role in (
            ("MachineRegistry", "machine_registry"),
            ("MachineStateAndSync", "machine_state_and_sync"),
            ("MachineSubscription", "machine_subscription"),
            ("CrossChainMirror", "cross_chain_mirror"),
            ("EventRegistryV2", "event_registry"),
        ):
            self._admin_tx(self.contract(artifact, g2[role]).functions.harnessInit(info_desk, admin))
        sub = self.contract("MachineSubscription", g2["machine_subscription"])
        for tier, bond in enumerate(TIER_BONDS_WEI):
            self._admin_tx(sub.functions.harnessSetRequiredPeaqAmount(tier, bond))

        registry = Web3.to_checksum_address(g1["identity_registry"])
        staking = Web3.to_checksum_address(g1["identity_staking"])
        ir = self.contract("IdentityRegistry", registry)
        st = self.contract("IdentityStaking", staking)
        self._admin_tx(st.functions.initialize(Web3.to_checksum_address(PRECOMPILES["peaq_token"]), admin))
        self._admin_tx(st.functions.authorize(registry))
        self._admin_tx(ir.functions.initialize(admin))
        self._admin_tx(ir.functions.setIdentityStaking(staking))
        self._admin_tx(ir.functions.setDIDPrecompile(Web3.to_checksum_address(PRECOMPILES["did"])))
        self._admin_tx(self.contract("MachineNFT", g1["machine_nft"]).functions.initialize(registry, staking, admin))
        self._admin_tx(self.contract("EventRegistryV1", g1["event_registry"]).functions.initialize(registry, staking, admin))
        if "machine_nft_adapter" in g1:  # peaq only: SDK 0.11.2 records no adapter on agung
            adapter = self.contract("MachineNFTAdapter", g1["machine_nft_adapter"])
            self._admin_tx(adapter.functions.harnessInit(Web3.to_checksum_address(g1["machine_nft"]), admin))
            self._admin_tx(adapter.functions.harnessSetFee(BRIDGE_FEE_WEI))
            self._admin_tx(adapter.functions.harnessSetPeer(LAYERZERO_EIDS["base"], b"\x00" * 12 + bytes.fromhex(
                BASE_NFT_PEER.removeprefix("0x"))))

    def _fund_accounts(self) -> None:
        token = self.contract("PeaqToken", PRECOMPILES["peaq_token"])
        for acct in self.accounts:
            self._rpc("anvil_setBalance", [acct.address, hex(NATIVE_FUNDING_WEI)])
            self._admin_tx(token.functions.harnessSetBalance(acct.address, PEAQ_TOKEN_FUNDING_WEI))

    # ------------------------------------------------------------------ helpers
    def set_peaq_balance(self, address: str, amount_wei: int) -> None:
        """Set an account's PEAQ-token (0x…0809) balance."""
        token = self.contract("PeaqToken", PRECOMPILES["peaq_token"])
        self._admin_tx(token.functions.harnessSetBalance(Web3.to_checksum_address(address), amount_wei))

    def place_token(self, address: str, holders: dict[str, int] | None = None) -> Any:
        """A test ERC-20 (the PeaqToken stand-in: transfer, balanceOf, ``Transfer`` logs) at ``address`` — e.g.
        peaq's USDT address, so the SDK's well-known token registry applies — with ``holders`` balances."""
        address = Web3.to_checksum_address(address)
        self._rpc("anvil_setCode", [address, load_artifact("PeaqToken")["deployedBytecode"]])
        token = self.contract("PeaqToken", address)
        self._admin_tx(token.functions.harnessInit(self.admin))
        for holder, amount in (holders or {}).items():
            self._admin_tx(token.functions.harnessSetBalance(Web3.to_checksum_address(holder), amount))
        return token

    def set_native_balance(self, address: str, amount_wei: int) -> None:
        self._rpc("anvil_setBalance", [Web3.to_checksum_address(address), hex(amount_wei)])

    def admin_call(self, artifact: str, address: str, fn_name: str, *args: Any) -> None:
        """Send ``fn_name(*args)`` from the harness admin (owner of every stand-in)."""
        self._admin_tx(getattr(self.contract(artifact, address).functions, fn_name)(*args))

    def snapshot(self) -> str:
        return str(self._rpc("evm_snapshot", []))

    def revert(self, snapshot_id: str) -> None:
        if self._rpc("evm_revert", [snapshot_id]) is not True:
            raise HarnessError(f"evm_revert({snapshot_id}) refused")

    def latest_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def describe(self) -> dict[str, Any]:
        """Everything a client needs, as printed by ``harness.py serve``."""
        cs = Web3.to_checksum_address
        return {
            "rpc_url": self.rpc_url,
            "port": self.port,
            "chain_id": self.chain_id,
            "admin": {"address": self.admin, "private_key": ANVIL_KEYS[ADMIN_INDEX]},
            "accounts": [{"address": a.address, "private_key": ANVIL_KEYS[i]} for i, a in enumerate(self.accounts)],
            "precompiles": {k: cs(v) for k, v in PRECOMPILES.items()},
            "gen2": {
                **{k: (v if k == "deployment_id" else cs(v)) for k, v in self.gen2.items()},
                "peaq_token": cs(PRECOMPILES["peaq_token"]),
                "local_protocol_chain_id": PEAQ_PROTOCOL_CHAIN_ID,
                "tier_bonds_wei": [str(b) for b in TIER_BONDS_WEI],
                "peer_keys": {role: "0x" + Web3.keccak(text=name).hex().removeprefix("0x") for role, name in PEER_KEY_NAMES.items()},
            },
            "gen1": {
                **{k: cs(v) for k, v in self.gen1.items()},
                "did_registry": cs(PRECOMPILES["did"]),
                "batch_precompile": cs(PRECOMPILES["batch"]),
                "min_bond_wei": str(10**18),
            },
            "event_limits": EVENT_LIMITS,
            "funding": {"native_wei": str(NATIVE_FUNDING_WEI), "peaq_token_wei": str(PEAQ_TOKEN_FUNDING_WEI)},
            "artifacts_dir": str(ARTIFACTS_DIR),
            "anvil_log": str(self.log_path),
        }


# ---------------------------------------------------------------------- pytest fixtures
try:
    import pytest
except ImportError:  # pragma: no cover - harness.py serve does not need pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def test_chain():
        """One test chain (chain id 3338) for the whole session."""
        with TestChain() as chain:
            yield chain

    @pytest.fixture()
    def chain(test_chain):
        """The session chain, rolled back to its state before the test afterwards."""
        snap = test_chain.snapshot()
        yield test_chain
        test_chain.revert(snap)

    @pytest.fixture()
    def fresh_chain():
        """A private chain for one test (use for stop()/restart())."""
        with TestChain() as chain:
            yield chain


# ---------------------------------------------------------------------- CLI
TOKEN_FUNDING_UNITS = 1_000_000 * 10**6  # of a --token ERC-20 (6 decimals like USDT / USDC)


def _emit(obj: dict[str, Any]) -> bool:
    """Print one JSON line; False when nobody reads stdout any more."""
    try:
        print(json.dumps(obj, sort_keys=True), flush=True)
        return True
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return False


def _serve(args: argparse.Namespace) -> int:
    """``serve``: see the module docstring and README.md ("Control while serving")."""
    chain = TestChain(chain_id=args.chain_id, port=args.port, block_time=args.block_time)
    tokens = list(args.token or [])
    requests: "queue.Queue[str]" = queue.Queue()

    signal.signal(signal.SIGTERM, lambda *_: requests.put("quit"))
    signal.signal(signal.SIGINT, lambda *_: requests.put("quit"))
    signal.signal(signal.SIGUSR1, lambda *_: requests.put("stop"))
    signal.signal(signal.SIGUSR2, lambda *_: requests.put("restart"))

    def _read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                requests.put(line.strip())
        requests.put("quit")  # the controlling process went away

    try:
        chain.start()
        for address in tokens:  # test ERC-20s (e.g. peaq's USDT address), 1,000,000 units each for #0…#8
            chain.place_token(address, {a.address: TOKEN_FUNDING_UNITS for a in chain.accounts})
        desc = chain.describe()
        desc["tokens"] = tokens
        if not _emit(desc):
            return 0
        if args.stdin_control:
            threading.Thread(target=_read_stdin, daemon=True).start()
        while True:
            try:
                command = requests.get(timeout=0.5)
            except queue.Empty:
                if not chain.running and not chain.stopped_on_request:
                    print(f"harness: anvil exited unexpectedly; see {chain.log_path}", file=sys.stderr)
                    return 1
                continue
            if command == "quit":
                return 0
            try:
                if command == "stop":
                    chain.stop(keep_state=True)
                    _emit({"event": "stopped", "rpc_url": chain.rpc_url})
                elif command == "restart":
                    chain.restart()
                    _emit({"event": "restarted", "rpc_url": chain.rpc_url, "block_number": chain.w3.eth.block_number})
                elif command == "describe":
                    _emit(chain.describe())
                else:
                    _emit({"event": "error", "message": f"unknown command {command!r} (stop|restart|describe|quit)"})
            except HarnessError as err:
                _emit({"event": "error", "message": str(err)})
    except HarnessError as err:
        print(f"harness: {err}", file=sys.stderr)
        return 1
    finally:
        chain.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the chain, print its JSON description, run until SIGTERM/SIGINT")
    serve.add_argument("--chain-id", type=int, default=MAINNET_CHAIN_ID, choices=(MAINNET_CHAIN_ID, AGUNG_CHAIN_ID))
    serve.add_argument("--port", type=int, default=None, help="default: a free port")
    serve.add_argument("--block-time", type=int, default=None,
                       help="whole seconds between blocks (default: anvil automine, one block per transaction)")
    serve.add_argument("--token", action="append", metavar="ADDRESS",
                       help="also place a test ERC-20 at ADDRESS, giving each test account 1,000,000 × 10^6 units")
    serve.add_argument("--stdin-control", action="store_true",
                       help="read commands stop|restart|describe|quit from stdin, one per line; EOF = quit")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
