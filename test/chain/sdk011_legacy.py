"""peaq-os-sdk 0.11.2 (gen-1 legacy path) against the test chain.

Needs the SDK 0.11.2 venv, so it is NOT collected by the main suite (no ``test_`` prefix).
Run directly:
    /work/main/.venv-sdk011/bin/python -m pytest test/chain/sdk011_legacy.py
or through ``test_sdk011_runner.py`` from the main suite.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version

import pytest
from web3 import Web3
from web3.exceptions import ContractLogicError

from peaq_os_sdk import PeaqosClient
from peaq_os_sdk.abis import load_abi
from peaq_os_sdk.did.batch_did_write import batch_did_write
from peaq_os_sdk.did.did_precompile import read_attribute
from peaq_os_sdk.exceptions import RpcError

import harness

assert version("peaq-os-sdk") == "0.11.2", f"run with the 0.11.2 venv, not peaq-os-sdk {version('peaq-os-sdk')}"

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _client(chain: harness.TestChain, index: int) -> PeaqosClient:
    g1 = chain.gen1
    return PeaqosClient(
        rpc_url=chain.rpc_url,
        private_key=harness.ANVIL_KEYS[index],
        identity_registry=g1["identity_registry"],
        identity_staking=g1["identity_staking"],
        event_registry=g1["event_registry"],
        machine_nft=g1["machine_nft"],
        did_registry=harness.PRECOMPILES["did"],
        batch_precompile=harness.PRECOMPILES["batch"],
    )


def _c(chain, artifact, role):
    return chain.contract(artifact, chain.gen1[role])


def _event(chain, machine_id, **overrides):
    event = dict(
        machine_id=machine_id,
        event_type=0,
        value=250,
        timestamp=chain.latest_timestamp() - 5,
        raw_data=b"hello peaqOS",
        trust_level=0,
        source_chain_id=0,
        source_tx_hash=None,
        metadata=b'{"mode":"legacy"}',
        currency="USD",
    )
    event.update(overrides)
    return event


def _nft_error_name(err: RpcError) -> str:
    """Name of the MachineNFT custom error behind an RpcError.

    SDK 0.11.2 resolves reverts only against the IdentityRegistry, IdentityStaking and
    EventRegistry ABIs (``utils/transaction.py::REVERT_RESOLVER``), so MachineNFT-only errors
    (``AlreadyMinted``, ``RecipientMustBeMachineOwner``) surface as ``TX_REVERTED``; the raw
    revert data on the cause still decodes with the SDK's own MachineNFT ABI.
    """
    data = getattr(err.__cause__, "data", None)
    assert isinstance(data, str) and data.startswith("0x"), err
    for entry in load_abi("MachineNFT"):
        if entry.get("type") == "error":
            sig = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
            if Web3.keccak(text=sig)[:4].hex().removeprefix("0x") == data[2:10]:
                return entry["name"]
    raise AssertionError(f"revert data {data} is not a MachineNFT error")


def test_register_self_and_already_registered(chain):
    client = _client(chain, 0)
    me = chain.accounts[0].address
    machine_id = client.register_machine()
    assert machine_id >= 1
    registry = _c(chain, "IdentityRegistry", "identity_registry")
    assert registry.functions.ownerOf(machine_id).call() == me
    assert registry.functions.machineIdOfOwner(me).call() == machine_id
    assert registry.functions.getOwnerIfExists(machine_id).call() == [me, True] or tuple(
        registry.functions.getOwnerIfExists(machine_id).call()
    ) == (me, True)
    assert registry.functions.minBond().call() == 10**18
    staking = _c(chain, "IdentityStaking", "identity_staking")
    assert staking.functions.isStaked(machine_id).call() is True
    assert staking.functions.getStake(machine_id).call() == 10**18

    with pytest.raises(RpcError) as info:
        client.register_machine()
    assert info.value.code == "AlreadyRegistered"


def test_register_for_makes_machine_owner_and_caller_operator(chain):
    operator = _client(chain, 1)
    machine = chain.accounts[2].address
    proxy_id = operator.register_machine()
    machine_id = operator.register_for(machine)
    assert machine_id == proxy_id + 1
    registry = _c(chain, "IdentityRegistry", "identity_registry")
    assert registry.functions.ownerOf(machine_id).call() == machine
    assert registry.functions.operatorOf(machine_id).call() == chain.accounts[1].address
    assert registry.functions.machineIdOfOwner(machine).call() == machine_id
    assert registry.functions.isAuthorizedOrOwner(chain.accounts[1].address, machine_id).call() is True
    with pytest.raises(RpcError) as info:
        operator.register_for(machine)
    assert info.value.code == "AlreadyRegistered"


def test_mint_nft_and_its_errors(chain):
    owner = _client(chain, 0)
    machine_id = owner.register_machine()
    nft = _c(chain, "MachineNFT", "machine_nft")

    # Operator-signed mint must go to the machine owner.
    operator = _client(chain, 1)
    operator.register_machine()
    proxied = operator.register_for(chain.accounts[2].address)
    with pytest.raises(RpcError) as info:
        operator.mint_nft(proxied, chain.accounts[1].address)
    assert info.value.code == "TX_REVERTED"
    assert _nft_error_name(info.value) == "RecipientMustBeMachineOwner"
    operator.mint_nft(proxied, chain.accounts[2].address)

    owner.mint_nft(machine_id, chain.accounts[0].address)
    token_id = owner.token_id_of(machine_id)
    assert token_id >= 1
    assert nft.functions.ownerOf(token_id).call() == chain.accounts[0].address
    assert nft.functions.machineIdOf(token_id).call() == machine_id
    with pytest.raises(RpcError) as info:
        owner.mint_nft(machine_id, chain.accounts[0].address)
    assert info.value.code == "TX_REVERTED"
    assert _nft_error_name(info.value) == "AlreadyMinted"

    # A machine whose stake is gone (harness un-bonds it) cannot mint.
    third = _client(chain, 3)
    unbonded = third.register_machine()
    chain.admin_call("IdentityStaking", chain.gen1["identity_staking"], "harnessSetStake", unbonded, 0)
    with pytest.raises(RpcError) as info:
        third.mint_nft(unbonded, chain.accounts[3].address)
    assert info.value.code == "MachineNotBonded"


def test_machine_and_proxy_did_attributes_via_batch_all(chain):
    operator = _client(chain, 1)
    proxy_id = operator.register_machine()
    machine_addr = chain.accounts[2].address
    machine_id = operator.register_for(machine_addr)
    operator.mint_nft(machine_id, machine_addr)
    token_id = operator.token_id_of(machine_id)

    # Proxy mode: the MACHINE key signs the machine-DID batch (didAccount = machine).
    machine = _client(chain, 2)
    operator_did = f"did:peaq:{chain.accounts[1].address}"
    tx = machine.write_machine_did_attributes(
        machine_id, token_id, operator_did, "https://docs.example.com", "https://api.example.com/robot", "public"
    )
    receipt = chain.w3.eth.get_transaction_receipt(tx)
    assert receipt["to"] == Web3.to_checksum_address(harness.PRECOMPILES["batch"])
    expected = {
        "machineId": str(machine_id),
        "nftTokenId": str(token_id),
        "operator": operator_did,
        "documentation_url": "https://docs.example.com",
        "data_api": "https://api.example.com/robot",
        "data_visibility": "public",
    }
    for name, value in expected.items():
        attr = read_attribute(machine, machine_addr, name)
        assert attr["name"] == name and attr["value"] == value
        assert attr["validity"] == 2**32 - 1 and attr["created"] > 0

    operator.write_proxy_did_attributes(proxy_id, [machine_id])
    assert read_attribute(operator, chain.accounts[1].address, "machines")["value"] == f"[{machine_id}]"
    assert read_attribute(operator, chain.accounts[1].address, "machineId")["value"] == str(proxy_id)

    # add-only: a second write of the same names reverts the whole batch.
    with pytest.raises(RpcError):
        operator.write_proxy_did_attributes(proxy_id, [machine_id])
    # Missing attribute: Error("Cannot find the item"), the text the CLI matches.
    with pytest.raises(ContractLogicError, match="Cannot find the item"):
        read_attribute(operator, chain.accounts[5].address, "machineId")
    # The batch forwards the real signer: writing someone else's DID is refused.
    with pytest.raises(RpcError) as info:
        batch_did_write(operator, chain.accounts[0].address, [{"name": "foo", "value": "bar"}])
    assert "AttributeAuthorizationFailed" in str(info.value)


def test_submit_event_and_batch_legacy(chain):
    owner = _client(chain, 0)
    machine_id = owner.register_machine()
    events = _c(chain, "EventRegistryV1", "event_registry")
    ts = chain.latest_timestamp() - 5

    tx, data_hash = owner.submit_event(**_event(chain, machine_id, timestamp=ts))
    assert data_hash == Web3.keccak(b"hello peaqOS")
    stored = events.functions.getEventAt(machine_id, 0).call()
    assert stored[0] == machine_id and stored[3] == ts and stored[9] == "USD" and stored[8] == b'{"mode":"legacy"}'

    hashes = owner.batch_submit_events(
        [_event(chain, machine_id, currency="EUR"), _event(chain, machine_id, event_type=1, currency="", raw_data=None)]
    )
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert events.functions.getEventCount(machine_id).call() == 3
    assert events.functions.totalEventCount().call() >= 3

    # The registry-level operator may submit for the machine it registered.
    operator = _client(chain, 1)
    operator.register_machine()
    proxied = operator.register_for(chain.accounts[2].address)
    operator.submit_event(**_event(chain, proxied))
    assert events.functions.getEventCount(proxied).call() == 1


def test_submit_event_legacy_errors(chain):
    owner = _client(chain, 0)
    machine_id = owner.register_machine()

    stranger = _client(chain, 4)
    with pytest.raises(RpcError) as info:
        stranger.submit_event(**_event(chain, machine_id))
    assert info.value.code == "NotAuthorizedSubmitter"

    with pytest.raises(RpcError) as info:
        owner.submit_event(**_event(chain, machine_id + 100))
    assert info.value.code == "MachineNotFound"

    with pytest.raises(RpcError) as info:
        owner.submit_event(**_event(chain, machine_id, timestamp=chain.latest_timestamp() + 3600))
    # FutureTimestamp is not in 0.11.2's KNOWN_REVERTS: TX_REVERTED carrying the selector.
    assert info.value.code == "TX_REVERTED" and "0x0ff02cef" in str(info.value)

    chain.admin_call("IdentityStaking", chain.gen1["identity_staking"], "harnessSetStake", machine_id, 0)
    with pytest.raises(RpcError) as info:
        owner.submit_event(**_event(chain, machine_id))
    assert info.value.code == "MachineNotBonded"

    # A deactivated machine (owner's own call) is refused.
    other = _client(chain, 5)
    deactivated = other.register_machine()
    registry = _c(chain, "IdentityRegistry", "identity_registry")
    tx = registry.functions.deactivateMachine(deactivated).transact({"from": chain.accounts[5].address})
    chain.w3.eth.wait_for_transaction_receipt(tx)
    assert registry.functions.getMachineStatus(deactivated).call() == 4
    with pytest.raises(RpcError) as info:
        other.submit_event(**_event(chain, deactivated))
    assert info.value.code == "MachineDeactivated"
