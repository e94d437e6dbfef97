"""Gen-1 smart accounts end to end: ~/smart_account_address and ~/deploy_smart_account of a
legacy-generation node against the test chain's MachineAccountFactory stand-in, compared with
what peaq-os-sdk 0.11.2 itself predicts and sends for the same parameters (run from
.venv-sdk011 on a snapshot of the same chain)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "chain"))

from peaqos_harness import NodeProcess, call_service, wait_until  # noqa: E402

import harness  # noqa: E402
from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from peaqos_node.srv import DeploySmartAccount, SmartAccountAddress  # noqa: E402

SDK011_PYTHON = Path(os.environ.get("PEAQOS_SDK011_PYTHON", HERE.parent / ".venv-sdk011" / "bin" / "python"))
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil #1
SDK_KEY = harness.ANVIL_KEYS[6]

SDK_SCRIPT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from peaq_os_sdk import PeaqosClient
a = json.loads(sys.argv[1])
c = PeaqosClient(rpc_url=a["rpc"], private_key=a["key"], identity_registry=a["g1"]["identity_registry"],
                 identity_staking=a["g1"]["identity_staking"], event_registry=a["g1"]["event_registry"],
                 machine_nft=a["g1"]["machine_nft"], did_registry="0x0000000000000000000000000000000000000800",
                 batch_precompile="0x0000000000000000000000000000000000000805",
                 machine_account_factory=a["g1"]["machine_account_factory"])
out = {"predicted": c.get_smart_account_address(a["owner"], a["machine"], a["salt"])}
if a.get("deploy"):
    out["deployed"] = c.deploy_smart_account(a["owner"], a["machine"], a["salt"])
print(json.dumps(out))
"""


def sdk011(chain, owner: str, machine: str, salt: int, deploy: bool = False) -> dict:
    assert SDK011_PYTHON.exists(), f"{SDK011_PYTHON} missing: scripts/test creates it (peaq-os-sdk==0.11.2)"
    args = {"rpc": chain.rpc_url, "key": SDK_KEY, "g1": chain.gen1, "owner": owner, "machine": machine,
            "salt": salt, "deploy": deploy}
    env = {**os.environ, "DO_NOT_TRACK": "1", "PEAQOS_TELEMETRY": "0"}
    p = subprocess.run([str(SDK011_PYTHON), "-c", SDK_SCRIPT, json.dumps(args)], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def chain():
    with harness.TestChain() as c:
        yield c


class Accounts:
    def __init__(self, ros_node, node: NodeProcess, address: str, name: str = "peaqos_node"):
        self.ros_node, self.node, self.address = ros_node, node, address
        self.addr_cli = ros_node.create_client(SmartAccountAddress, f"/{name}/smart_account_address")
        self.deploy_cli = ros_node.create_client(DeploySmartAccount, f"/{name}/deploy_smart_account")

    def address_of(self, **f) -> SmartAccountAddress.Response:
        return call_service(self.ros_node, self.addr_cli, SmartAccountAddress.Request(**f), proc=self.node)

    def deploy(self, **f) -> DeploySmartAccount.Response:
        return call_service(self.ros_node, self.deploy_cli, DeploySmartAccount.Request(**f), timeout=90,
                            proc=self.node)


def start_node(tmp: Path, chain, generation: str = "legacy", name: str = "node",
               node_name: str | None = None) -> tuple[NodeProcess, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    key = Account.create()
    chain.set_native_balance(key.address, 100 * 10**18)
    policy = tmp / "map.yaml"
    policy.write_text("schema_version: 1\ntopics:\n  - topic: /t/sa_unused\n    type: std_msgs/msg/String\n")
    node = NodeProcess(tmp, {
        "policy_file": str(policy), "data_dir": str(tmp / "data"), "chain.rpc_urls": f"['{chain.rpc_url}']",
        "chain.generation": generation, "chain.receipt_timeout": "5.0", "chain.poll_interval": "0.05",
    }, env={"PEAQOS_PRIVATE_KEY": key.key.hex()}, name=name, node_name=node_name).start()
    node.wait_for_log("subscribed to /t/sa_unused")
    return node, key.address


@pytest.fixture
def accounts(ros_node, tmp_path, chain):
    node, address = start_node(tmp_path, chain)
    yield Accounts(ros_node, node, address)
    assert node.stop() == 0, node.output()


def nonce(chain, a: str) -> int:
    return chain.w3.eth.get_transaction_count(Web3.to_checksum_address(a))


def test_prediction_and_deployment_equal_the_sdk(chain, accounts):
    me = accounts.address
    r = accounts.address_of(owner=OWNER, salt="42")
    assert r.success and not r.deployed, r
    factory = chain.contract("MachineAccountFactory", chain.gen1["machine_account_factory"])
    assert r.address == factory.functions.getAddress(OWNER, me, 42).call()

    # the SDK, on a snapshot: its prediction and the transaction it sends
    snap = chain.snapshot()
    sdk = sdk011(chain, OWNER, me, 42, deploy=True)
    block = chain.w3.eth.get_block("latest", full_transactions=True)
    sdk_tx = [t for t in block.transactions if t["to"] == factory.address]
    chain.revert(snap)
    assert sdk["predicted"] == sdk["deployed"] == r.address
    assert len(sdk_tx) == 1

    before = nonce(chain, me)
    d = accounts.deploy(owner=OWNER, salt="42")
    assert d.success and d.deployed and d.address == r.address, d
    assert d.intent_id and d.tx_hash and d.block_number > 0
    tx = chain.w3.eth.get_transaction(d.tx_hash)
    assert tx["from"] == me and tx["to"] == factory.address and tx["value"] == 0
    assert bytes(tx["input"]) == bytes(sdk_tx[0]["input"]), "calldata differs from SDK 0.11.2's"
    account = chain.contract("MachineSmartAccount", d.address)
    assert account.functions.owner().call() == OWNER and account.functions.machine().call() == me
    assert nonce(chain, me) == before + 1

    # idempotent: the account exists, so it is reported and nothing is sent
    again = accounts.deploy(owner=OWNER, salt="42")
    assert again.success and not again.deployed and again.address == d.address and again.intent_id == "", again
    assert nonce(chain, me) == before + 1
    assert accounts.address_of(owner=OWNER, salt="42").deployed

    # defaults: owner and machine are the machine's own address, salt 0 (the SDK's for the same)
    own = accounts.deploy()
    assert own.success and own.deployed, own
    assert own.address == sdk011(chain, me, me, 0)["predicted"]


def test_a_call_repeated_while_the_deployment_is_pending_waits_for_the_same_transaction(chain, accounts):
    me = accounts.address
    before = nonce(chain, me)
    chain.w3.provider.make_request("evm_setAutomine", [False])
    try:
        first = accounts.deploy(owner=OWNER, salt="7")
        assert (first.success, first.error_code) == (False, "RECEIPT_AWAIT_FAILED"), first
        assert first.intent_id and first.tx_hash
        second = accounts.deploy(owner=OWNER, salt="7")
        assert (second.error_code, second.intent_id, second.tx_hash) == ("RECEIPT_AWAIT_FAILED", first.intent_id,
                                                                         first.tx_hash), second
    finally:
        chain.w3.provider.make_request("evm_setAutomine", [True])
        chain.w3.provider.make_request("evm_mine", [])
    wait_until(lambda: chain.w3.eth.get_transaction_receipt(first.tx_hash) is not None, 20, "the deployment's block")
    third = accounts.deploy(owner=OWNER, salt="7")
    assert third.success and not third.deployed, third
    assert nonce(chain, me) == before + 1, "one transaction for three calls"


def test_refusals_name_their_field(chain, accounts, ros_node, tmp_path):
    me = accounts.address
    before = nonce(chain, me)
    for fields, code, field in [
        (dict(owner="0x12"), "VALIDATION_ERROR", "owner"),
        (dict(machine="f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), "VALIDATION_ERROR", "machine"),
        (dict(salt="-1"), "VALIDATION_ERROR", "salt"),
        (dict(salt="1e3"), "VALIDATION_ERROR", "salt"),
        (dict(owner="0x" + "00" * 20), "InvalidAddress", "owner"),  # the factory's revert, in the simulation
    ]:
        r = accounts.deploy(**fields)
        assert (r.success, r.error_code, r.error_field) == (False, code, field), (fields, r)
        assert r.message
    assert accounts.address_of(salt="x").error_field == "salt"
    assert nonce(chain, me) == before, "a refused request sends nothing"

    # another generation: the legacy factory is not used
    node2, _ = start_node(tmp_path / "g2", chain, generation="economics2", name="economics2",
                          node_name="peaqos_node_g2")
    try:
        c2 = Accounts(ros_node, node2, "", name="peaqos_node_g2")
        for r in (c2.deploy(), c2.address_of()):
            assert (r.success, r.error_code, r.error_field) == (False, "GENERATION_UNSUPPORTED", "chain.generation"), r
    finally:
        assert node2.stop() == 0
