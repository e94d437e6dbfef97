"""The gen-1 NFT bridge end to end: the ~/bridge_nft action of a legacy-generation node against
the test chain (source, with the MachineNFTAdapter stand-in) and a second anvil as the destination
chain, where this test plays LayerZero: when it sees the adapter's ONFTSent it mints the token to
the send's recipient on the destination's MachineNFTBase stand-in. The node's approval and send
are compared with what peaq-os-sdk 0.11.2's bridge_nft sends for the same token (run from
.venv-sdk011 with the machine's key on a snapshot of the same chain)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "chain"))
sys.path.insert(0, str(HERE / "gas_station"))

from peaqos_harness import NodeProcess, call_service, scaled, wait_until  # noqa: E402

import harness  # noqa: E402
import rclpy  # noqa: E402
from action_msgs.msg import GoalStatus  # noqa: E402
from eth_account import Account  # noqa: E402
from gas_station_fixtures import Anvil  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from web3 import Web3  # noqa: E402

from peaqos_node.action import BridgeNft  # noqa: E402
from peaqos_node.srv import MintNft, Register  # noqa: E402

SDK011_PYTHON = Path(os.environ.get("PEAQOS_SDK011_PYTHON", HERE.parent / ".venv-sdk011" / "bin" / "python"))
BASE_CHAIN_ID = 8453
BASE_NFT = Web3.to_checksum_address(harness.BASE_NFT_PEER)
RECIPIENT = "0x976EA74026E726554dB657fA54763abd0C3a0aa9"  # anvil #6, the owner on Base

SDK_BRIDGE = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from peaq_os_sdk import PeaqosClient
a = json.loads(sys.argv[1])
g1 = a["g1"]
c = PeaqosClient(rpc_url=a["rpc"], private_key=a["key"], identity_registry=g1["identity_registry"],
                 identity_staking=g1["identity_staking"], event_registry=g1["event_registry"],
                 machine_nft=g1["machine_nft"], did_registry="0x0000000000000000000000000000000000000800",
                 batch_precompile="0x0000000000000000000000000000000000000805",
                 machine_nft_adapter=g1["machine_nft_adapter"])
print(json.dumps({"tx": c.bridge_nft(a["token_id"], "peaq", "base", a["recipient"], options=bytes.fromhex(a["options"]))}))
"""


class LayerZero:
    """Plays the DVNs and executor: each ONFTSent of the adapter mints the token to the send's
    recipient on the destination, after `delay` seconds (off while `paused`)."""

    def __init__(self, src: harness.TestChain, dst_w3: Web3, admin: str):
        self.src, self.dst_w3, self.admin = src, dst_w3, admin
        self.adapter = src.contract("MachineNFTAdapter", src.gen1["machine_nft_adapter"])
        self.base = dst_w3.eth.contract(address=BASE_NFT, abi=harness.load_artifact("MachineNFTBase")["abi"])
        self.delay, self.paused, self.delivered = 1.0, False, []
        self.block = src.w3.eth.block_number + 1
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                if not self.paused:
                    self._deliver()
            except Exception as e:  # noqa: BLE001 - a test chain hiccup: try again
                print("layerzero:", repr(e))
            time.sleep(0.1)

    def _deliver(self) -> None:
        head = self.src.w3.eth.block_number
        if head < self.block:
            return
        for log in self.adapter.events.ONFTSent().get_logs(from_block=self.block, to_block=head):
            tx = self.src.w3.eth.get_transaction(log["transactionHash"])
            _, args = self.adapter.decode_function_input(tx["input"])
            sp = args["p"]
            to = Web3.to_checksum_address("0x" + bytes(sp["to"] if isinstance(sp, dict) else sp[1])[12:].hex())
            time.sleep(self.delay)
            h = self.base.functions.harnessMint(to, log["args"]["tokenId"]).transact({"from": self.admin})
            self.dst_w3.eth.wait_for_transaction_receipt(h)
            self.delivered.append((log["args"]["tokenId"], to))
        self.block = head + 1


@pytest.fixture(scope="module")
def chains():
    with harness.TestChain() as src, Anvil(chain_id=BASE_CHAIN_ID) as dst:
        w3 = Web3(Web3.HTTPProvider(dst.url))
        admin = w3.eth.accounts[9]
        dst.rpc("anvil_setCode", [BASE_NFT, harness.load_artifact("MachineNFTBase")["deployedBytecode"]])
        base = w3.eth.contract(address=BASE_NFT, abi=harness.load_artifact("MachineNFTBase")["abi"])
        w3.eth.wait_for_transaction_receipt(base.functions.harnessInit(admin).transact({"from": admin}))
        lz = LayerZero(src, w3, admin)
        yield src, dst, w3, lz
        lz.stop.set()


class Robot:
    """The node under test and an rclpy caller of its services and its action."""

    def __init__(self, ros_node, tmp: Path, src, dst, *, node_name: str = "peaqos_node", **params):
        tmp.mkdir(parents=True, exist_ok=True)
        self.ros_node, self.src, self.name = ros_node, src, node_name
        self.key = Account.create()
        self.address = self.key.address
        src.set_native_balance(self.address, 100 * 10**18)
        policy = tmp / "map.yaml"
        policy.write_text("schema_version: 1\ntopics:\n  - topic: /t/br_unused\n    type: std_msgs/msg/String\n")
        p = {"policy_file": str(policy), "data_dir": str(tmp / "data"), "chain.rpc_urls": f"['{src.rpc_url}']",
             "chain.generation": "legacy", "chain.receipt_timeout": "30.0", "chain.poll_interval": "0.05",
             "bridge.destination_rpc_urls": f"['{dst.url}']", "bridge.destination_nft_address": f"'{BASE_NFT}'",
             "bridge.poll_interval": "0.2", "bridge.arrival_timeout": "30.0"}
        p.update(params)
        self.node = NodeProcess(tmp, p, env={"PEAQOS_PRIVATE_KEY": self.key.key.hex()}, name=node_name,
                                node_name=None if node_name == "peaqos_node" else node_name).start()
        self.node.wait_for_log("subscribed to /t/br_unused")
        self.action = ActionClient(ros_node, BridgeNft, f"/{node_name}/bridge_nft")

    def call(self, srv, name: str, **fields):
        cli = self.ros_node.create_client(srv, f"/{self.name}/{name}")
        return call_service(self.ros_node, cli, srv.Request(**fields), timeout=60, proc=self.node)

    def machine_nft(self) -> int:
        """Register the machine and mint its Machine NFT (the node's own legacy services)."""
        r = self.call(Register, "register")
        assert r.success, r
        m = self.call(MintNft, "mint_nft", machine_id=r.machine_id)
        assert m.success, m
        return int(m.token_id)

    def send_goal(self, **fields):
        """Send a goal (again while the node has not received it: discovery can drop the first)."""
        assert self.action.wait_for_server(timeout_sec=scaled(20)), "~/bridge_nft not available"
        feedback: list = []
        seen = self.node.requests_seen("~/bridge_nft")
        state = {"fut": self.action.send_goal_async(BridgeNft.Goal(**fields), feedback_callback=feedback.append),
                 "at": time.monotonic()}

        def accepted() -> bool:
            if state["fut"].done():
                return True
            if time.monotonic() - state["at"] > scaled(3) and self.node.requests_seen("~/bridge_nft") == seen:
                state.update(fut=self.action.send_goal_async(BridgeNft.Goal(**fields),
                                                            feedback_callback=feedback.append), at=time.monotonic())
            return False
        wait_until(accepted, 30, "the goal to be answered", nodes=self.node, spin=self.ros_node)
        handle = state["fut"].result()
        assert handle.accepted
        return handle, feedback

    def result(self, handle, timeout: float = 90.0):
        fut = handle.get_result_async()
        wait_until(fut.done, timeout, "the goal's result", nodes=self.node, spin=self.ros_node)
        return fut.result().status, fut.result().result

    def bridge(self, **fields):
        handle, feedback = self.send_goal(**fields)
        status, result = self.result(handle)
        return status, result, [f.feedback for f in feedback]

    def stop(self) -> None:
        self.action.destroy()
        assert self.node.stop() == 0, self.node.output()

    def nonce(self) -> int:
        return self.src.w3.eth.get_transaction_count(self.address)


def sdk_bridge(src, key: str, token_id: int, recipient: str) -> list[dict]:
    """What SDK 0.11.2 sends to bridge `token_id` with `key`: the approval and the send."""
    assert SDK011_PYTHON.exists(), f"{SDK011_PYTHON} missing: scripts/test creates it (peaq-os-sdk==0.11.2)"
    start = src.w3.eth.block_number
    args = {"rpc": src.rpc_url, "key": key, "g1": src.gen1, "token_id": token_id, "recipient": recipient,
            "options": ""}
    p = subprocess.run([str(SDK011_PYTHON), "-c", SDK_BRIDGE, json.dumps(args)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "DO_NOT_TRACK": "1", "PEAQOS_TELEMETRY": "0"})
    assert p.returncode == 0, p.stderr[-3000:]
    txs = []
    for n in range(start + 1, src.w3.eth.block_number + 1):
        txs += src.w3.eth.get_block(n, full_transactions=True).transactions
    return txs


@pytest.fixture
def robot(ros_node, tmp_path, chains):
    src, dst, _, _ = chains
    r = Robot(ros_node, tmp_path, src, dst)
    yield r
    r.stop()


def test_bridge_quotes_approves_sends_and_sees_the_arrival(chains, robot):
    src, dst, dst_w3, lz = chains
    token = robot.machine_nft()
    nft = src.contract("MachineNFT", src.gen1["machine_nft"])
    adapter = src.gen1["machine_nft_adapter"]
    assert nft.functions.ownerOf(token).call() == robot.address

    # the SDK's transactions for the same token, key and recipient, on a snapshot
    lz.paused = True
    snap = src.snapshot()
    sdk = sdk_bridge(src, "0x" + robot.key.key.hex().removeprefix("0x"), token, RECIPIENT)
    src.revert(snap)
    lz.block = src.w3.eth.block_number + 1
    lz.paused = False
    sdk_approve = [t for t in sdk if t["to"] == nft.address]
    sdk_send = [t for t in sdk if t["to"] == Web3.to_checksum_address(adapter)]
    assert len(sdk_approve) == 1 and len(sdk_send) == 1, sdk

    before = robot.nonce()
    status, r, steps = robot.bridge(token_id=str(token), recipient=RECIPIENT)
    assert status == GoalStatus.STATUS_SUCCEEDED and r.success, r
    assert r.arrived and r.destination_owner == RECIPIENT and not r.resumed
    assert r.approval_tx_hash and r.tx_hash and r.block_number > 0 and r.intent_id
    assert int(r.native_fee) == harness.BRIDGE_FEE_WEI
    names = [s.step for s in steps]
    assert names[0] == "quoted" and names[1] == "approved" and "sent" in names and names[-1] == "arrived", names
    assert "waiting" in names, names  # LayerZero took a second
    # the node sent exactly what the SDK sends
    approve = src.w3.eth.get_transaction(r.approval_tx_hash)
    send = src.w3.eth.get_transaction(r.tx_hash)
    assert bytes(approve["input"]) == bytes(sdk_approve[0]["input"]) and approve["to"] == nft.address
    assert bytes(send["input"]) == bytes(sdk_send[0]["input"]), "send calldata differs from SDK 0.11.2's"
    assert send["value"] == sdk_send[0]["value"] == harness.BRIDGE_FEE_WEI
    assert robot.nonce() == before + 2
    assert nft.functions.ownerOf(token).call() == Web3.to_checksum_address(adapter)  # locked on peaq
    base = dst_w3.eth.contract(address=BASE_NFT, abi=harness.load_artifact("MachineNFTBase")["abi"])
    assert base.functions.ownerOf(token).call() == RECIPIENT

    # the same goal again: nothing is sent, the arrival is seen again
    status, again, steps = robot.bridge(token_id=str(token), recipient=RECIPIENT)
    assert status == GoalStatus.STATUS_SUCCEEDED and again.resumed and again.tx_hash == r.tx_hash, again
    assert [s.step for s in steps][:1] == ["sent"] and robot.nonce() == before + 2


def test_arrival_timeout_then_cancel_then_arrival_without_a_second_send(chains, robot):
    src, _, _, lz = chains
    token = robot.machine_nft()
    lz.paused = True
    try:
        before = robot.nonce()
        status, r, steps = robot.bridge(token_id=str(token), recipient=RECIPIENT, arrival_timeout=1.5)
        assert status == GoalStatus.STATUS_ABORTED and (r.error_code, r.success) == ("ARRIVAL_TIMEOUT", False), r
        assert r.tx_hash and r.intent_id and "waiting" in [s.step for s in steps]
        sent = r.tx_hash
        assert robot.nonce() == before + 2

        handle, feedback = robot.send_goal(token_id=str(token), recipient=RECIPIENT)
        wait_until(lambda: any(f.feedback.step == "waiting" for f in feedback), 30, "a waiting feedback",
                   nodes=robot.node, spin=robot.ros_node)
        cancel = handle.cancel_goal_async()
        wait_until(cancel.done, 30, "the cancel answer", nodes=robot.node, spin=robot.ros_node)
        assert cancel.result().goals_canceling, cancel.result()
        status, c = robot.result(handle)
        assert status == GoalStatus.STATUS_CANCELED and c.error_code == "CANCELLED" and c.tx_hash == sent, c
        assert c.resumed
    finally:
        lz.paused = False
    status, r, _ = robot.bridge(token_id=str(token), recipient=RECIPIENT)
    assert status == GoalStatus.STATUS_SUCCEEDED and r.arrived and r.resumed and r.tx_hash == sent, r
    assert robot.nonce() == before + 2, "one approval and one send for three goals"


def test_refusals_name_their_field(chains, robot, ros_node, tmp_path):
    src, dst, _, _ = chains
    token = robot.machine_nft()
    # a Machine NFT of another machine (anvil #3 registers and mints its own)
    other = src.accounts[3].address
    ir = src.contract("IdentityRegistry", src.gen1["identity_registry"])
    nft = src.contract("MachineNFT", src.gen1["machine_nft"])
    src.w3.eth.wait_for_transaction_receipt(ir.functions.register().transact(
        {"from": other, "value": ir.functions.minBond().call()}))
    mid = ir.functions.machineIdOfOwner(other).call()
    src.w3.eth.wait_for_transaction_receipt(nft.functions.mint(mid, other).transact({"from": other}))
    foreign = nft.functions.tokenIdOf(mid).call()
    before = robot.nonce()
    for fields, code, field in [
        (dict(token_id=str(foreign)), "NOT_TOKEN_OWNER", "token_id"),
        (dict(token_id="987654"), "ERC721NonexistentToken", "token_id"),
        (dict(token_id="abc"), "VALIDATION_ERROR", "token_id"),
        (dict(token_id="0"), "VALIDATION_ERROR", "token_id"),
        (dict(token_id=str(token), destination="peaq"), "VALIDATION_ERROR", "destination"),
        (dict(token_id=str(token), destination="solana"), "VALIDATION_ERROR", "destination"),
        (dict(token_id=str(token), recipient="0x12"), "VALIDATION_ERROR", "recipient"),
        (dict(token_id=str(token), extra_options_hex="zz"), "VALIDATION_ERROR", "extra_options_hex"),
        (dict(token_id=str(token), arrival_timeout=-1.0), "VALIDATION_ERROR", "arrival_timeout"),
    ]:
        status, r, _ = robot.bridge(**fields)
        assert status == GoalStatus.STATUS_ABORTED and (r.success, r.error_code, r.error_field) == (False, code, field), \
            (fields, r)
        assert r.message
    # a LayerZero fee above the machine's balance
    adapter = src.contract("MachineNFTAdapter", src.gen1["machine_nft_adapter"])
    src.admin_call("MachineNFTAdapter", adapter.address, "harnessSetFee", 10**24)
    try:
        status, r, steps = robot.bridge(token_id=str(token))
        assert (r.error_code, r.native_fee) == ("INSUFFICIENT_BALANCE", str(10**24)), r
        assert [s.step for s in steps] == ["quoted"]
    finally:
        src.admin_call("MachineNFTAdapter", adapter.address, "harnessSetFee", harness.BRIDGE_FEE_WEI)
    assert robot.nonce() == before, "a refused goal sends nothing"

    # another generation; a node that names no destination chain
    for name, params, code, field in [
        ("peaqos_node_gen2", {"chain.generation": "economics2"}, "GENERATION_UNSUPPORTED", "chain.generation"),
        ("peaqos_node_nodst", {"bridge.destination_rpc_urls": "['']"}, "VALIDATION_ERROR",
         "bridge.destination_rpc_urls"),
    ]:
        other_robot = Robot(ros_node, tmp_path / name, src, dst, node_name=name, **params)
        try:
            status, r, _ = other_robot.bridge(token_id=str(token))
            assert (r.success, r.error_code, r.error_field) == (False, code, field), (name, r)
        finally:
            other_robot.stop()
