"""The unmodified peaq-os-sdk 0.12.1 (gen 2, deployment "peaq-mainnet") against the test chain.

Run: /work/main/.venv/bin/python -m pytest test/chain/test_sdk012_gen2.py
"""

from __future__ import annotations

import pytest
from eth_abi import encode
from web3 import Web3
from web3.exceptions import ContractCustomError

from peaq_os_sdk import DeploymentConfig, PeaqosClient
from peaq_os_sdk.exceptions import ActivationError, RpcError
from peaq_os_sdk.onboarding.activation_types import (
    ActivateMachineParams,
    ServiceEndpointInput,
    VerificationMethodInput,
)
from peaq_os_sdk.utils.transaction import send_and_await

import harness

MACHINE_TYPE = "robot"
CREDENTIAL_SUBJECT = b'{"serial":"SN-0001"}'
# SPEC §8.4 vector: keccak256(abi.encode("robot", b'{"serial":"SN-0001"}')).
VECTOR_MACHINE_ID = 0x969C4AD1EF474D320960C685173AFE0603BDBB5A87036226DA7BF547C9740B49
MANUFACTURER = "0x3333333333333333333333333333333333333333"
ZERO32 = "0x" + "00" * 32


def _client(chain: harness.TestChain, index: int) -> PeaqosClient:
    return PeaqosClient(
        rpc_url=chain.rpc_url,
        private_key=harness.ANVIL_KEYS[index],
        deployment=DeploymentConfig(deployment_id="peaq-mainnet"),
    )


def _params(controller: str, *, machine_type: str = MACHINE_TYPE, subject: bytes = CREDENTIAL_SUBJECT, tier: int = 0):
    return ActivateMachineParams(
        controller=controller,
        verification_methods=(
            VerificationMethodInput(
                id="#key-1",
                method_type="EcdsaSecp256k1RecoveryMethod2020",
                controller=controller,
                public_key_multibase="zTest",
            ),
        ),
        authentication=(0,),
        service_endpoints=(
            ServiceEndpointInput(id="#data", service_type="DataAPI", service_endpoint="https://api.example.com/robot-001"),
        ),
        machine_type=machine_type,
        credential_subject=subject,
        manufacturer=MANUFACTURER,
        tier=tier,
    )


def _activate(chain: harness.TestChain, owner_index: int = 0, controller_index: int = 1, **kw):
    client = _client(chain, owner_index)
    result = client.activate_machine(_params(chain.accounts[controller_index].address, **kw))
    return client, result


def _contracts(chain: harness.TestChain):
    g2 = chain.gen2
    return (
        chain.contract("MachineRegistry", g2["machine_registry"]),
        chain.contract("MachineSubscription", g2["machine_subscription"]),
        chain.contract("EventRegistryV2", g2["event_registry"]),
        chain.contract("PeaqToken", harness.PRECOMPILES["peaq_token"]),
    )


def _event(chain, machine_id, *, timestamp=None, currency="USD", event_type=0, metadata=b'{"mode":"self"}', raw=b"sensor:ok"):
    return dict(
        machine_id=machine_id,
        event_type=event_type,
        value=123,
        timestamp=timestamp if timestamp is not None else chain.latest_timestamp() - 10,
        raw_data=raw,
        trust_level=0,
        source_chain_id=3338,
        source_tx_hash=None,
        metadata=metadata,
        currency=currency,
    )


def test_activate_machine_succeeds_and_state_reads_back(chain):
    registry, subscription, _, token = _contracts(chain)
    owner, controller = chain.accounts[0].address, chain.accounts[1].address
    balance_before = token.functions.balanceOf(owner).call()

    _, result = _activate(chain)

    assert result.machine_id == VECTOR_MACHINE_ID
    assert result.owner.lower() == owner.lower()
    assert result.controller.lower() == controller.lower()
    assert result.bond_amount == harness.TIER_BONDS_WEI[0]
    assert result.net_peaq_amount == harness.TIER_BONDS_WEI[0]
    assert result.is_homed_locally is True

    mid = result.machine_id
    assert registry.functions.ownerOf(mid).call() == owner
    assert registry.functions.controllerOf(mid).call() == controller
    assert registry.functions.operatorOf(mid).call() == owner
    doc = registry.functions.didDocument(mid).call()
    assert doc[0] == f"did:peaq:{mid}"
    assert doc[3] == [0]
    assert subscription.functions.subscriptionStatus(mid).call() == 1
    sub = subscription.functions.subscriptions(mid).call()
    assert sub[0] == 0 and sub[3] == harness.TIER_BONDS_WEI[0] and sub[2] > sub[1] > 0
    # Exactly the net bond moved from the signer to MachineSubscription; the approval is used up.
    assert token.functions.balanceOf(owner).call() == balance_before - harness.TIER_BONDS_WEI[0]
    assert token.functions.balanceOf(subscription.address).call() == harness.TIER_BONDS_WEI[0]
    assert token.functions.allowance(owner, subscription.address).call() == 0


def test_activation_with_voucher_credit_pulls_only_the_net(chain):
    _, subscription, _, token = _contracts(chain)
    signer = chain.accounts[2].address
    credit = 4 * 10**18
    chain.admin_call("MachineSubscription", subscription.address, "harnessSetVoucherCredit", signer, credit)
    before = token.functions.balanceOf(signer).call()

    _, result = _activate(chain, owner_index=2, controller_index=2, machine_type="drone", tier=1)

    assert result.bond_amount == harness.TIER_BONDS_WEI[1]
    assert result.voucher_credit_applied == credit
    assert result.net_peaq_amount == harness.TIER_BONDS_WEI[1] - credit
    assert token.functions.balanceOf(signer).call() == before - (harness.TIER_BONDS_WEI[1] - credit)
    assert subscription.functions.subscriptions(result.machine_id).call()[3] == harness.TIER_BONDS_WEI[1]


def test_second_activation_is_already_activated(chain):
    _activate(chain)
    with pytest.raises(ActivationError) as info:
        _activate(chain)
    assert info.value.code == "ALREADY_ACTIVATED"


def test_invalid_tier_price_unavailable_and_technical_pause(chain):
    # InvalidTier is rejected locally by the SDK; price and pause come from the chain.
    chain.admin_call("MachineSubscription", chain.gen2["machine_subscription"], "harnessSetRequiredPeaqAmount", 2, 0)
    with pytest.raises(ActivationError) as info:
        _activate(chain, tier=2, machine_type="pro-bot")
    assert info.value.code == "PRICE_NOT_AVAILABLE"
    chain.admin_call("MachineStateAndSync", chain.gen2["machine_state_and_sync"], "setTechnicalPausedGlobal", True)
    with pytest.raises(ActivationError) as info:
        _activate(chain, machine_type="paused-bot")
    assert info.value.code == "TECHNICALLY_PAUSED"


def test_submit_event_and_batch_read_back(chain):
    client, result = _activate(chain)
    mid = result.machine_id
    _, _, events, _ = _contracts(chain)
    ts = chain.latest_timestamp() - 5

    tx_hash, data_hash = client.submit_event(**_event(chain, mid, timestamp=ts))
    assert data_hash == Web3.keccak(b"sensor:ok")
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    (log,) = [entry for entry in receipt["logs"] if entry["address"] == events.address]
    assert log["topics"][0].hex().removeprefix("0x") == "43cf4ee187795b573b3f38e97f7944f1354ded4b87a5703aaf904465a981a081"
    assert log["topics"][3] == Web3.keccak(text="USD")

    stored = events.functions.getEventAt(mid, 0).call()
    assert tuple(bytes(v) if isinstance(v, bytes) else v for v in stored) == (
        mid, 0, 123, ts, bytes(Web3.keccak(b"sensor:ok")), 0, 3338, bytes(32), b'{"mode":"self"}', "USD"
    )

    # The DID controller may submit too; batch goes through batchAll at 0x…0805.
    controller_client = _client(chain, 1)
    batch = [
        _event(chain, mid, timestamp=ts, currency="EUR"),
        _event(chain, mid, timestamp=ts, currency="", event_type=1, raw=None, metadata=b""),
    ]
    hashes = controller_client.batch_submit_events(batch)
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert events.functions.getEventCount(mid).call() == 3
    assert events.functions.totalEventCount().call() >= 3
    second = events.functions.getEventAt(mid, 2).call()
    assert second[1] == 1 and second[4] == bytes(32) and second[9] == ""
    page = events.functions.getEvents(mid, 1, 10).call()
    assert [e[9] for e in page] == ["EUR", ""]


def test_submit_event_errors_map_to_sdk_codes(chain):
    client, result = _activate(chain)
    mid = result.machine_id

    with pytest.raises(RpcError) as info:
        client.submit_event(**_event(chain, mid, timestamp=chain.latest_timestamp() + 3600))
    assert info.value.code == "FUTURE_TIMESTAMP"

    with pytest.raises(RpcError) as info:
        client.submit_event(**_event(chain, mid, metadata=b"x" * (harness.EVENT_LIMITS["max_metadata_size"] + 1)))
    assert info.value.code == "METADATA_TOO_LARGE"

    stranger = _client(chain, 3)
    with pytest.raises(RpcError) as info:
        stranger.submit_event(**_event(chain, mid))
    assert info.value.code == "NOT_OWNER_OR_CONTROLLER"

    with pytest.raises(RpcError) as info:
        client.batch_submit_events([_event(chain, mid), _event(chain, mid, timestamp=chain.latest_timestamp() + 3600)])
    assert info.value.code == "FUTURE_TIMESTAMP"

    chain.admin_call("MachineSubscription", chain.gen2["machine_subscription"], "harnessSetStatus", mid, 3)
    with pytest.raises(RpcError) as info:
        client.submit_event(**_event(chain, mid))
    assert info.value.code == "SUBSCRIPTION_NOT_ELIGIBLE"


def test_currency_shape_and_missing_machine_map_through_the_sdk_send_path(chain):
    """The SDK validates currency and routes unknown machines before sending, so these two
    reverts are provoked through the SDK's own send path (``send_and_await``) with the
    SDK-bound EventRegistry, which decodes them with the SDK's ABI and code table."""
    client, result = _activate(chain)
    mid = result.machine_id
    ts = chain.latest_timestamp() - 1

    def send(machine_id, currency):
        args = [machine_id, 0, 1, currency, ts, ZERO32, 0, 0, ZERO32, b""]
        return send_and_await(client.web3, client.account, client.event_registry, "submitEvent", args=args)

    for bad in ("usd", "US", "ABCDEFGHIJK", "US D"):
        with pytest.raises(RpcError) as info:
            send(mid, bad)
        assert info.value.code == "INVALID_CURRENCY_SHAPE", bad
    with pytest.raises(RpcError) as info:
        send(12345, "USD")
    assert info.value.code == "MACHINE_NOT_FOUND"
    for index, bad_value, code in ((1, 2, "InvalidEventType"), (6, 3, "InvalidTrustLevel")):
        args = [mid, 0, 1, "USD", ts, ZERO32, 0, 0, ZERO32, b""]
        args[index] = bad_value
        with pytest.raises(RpcError) as info:
            send_and_await(client.web3, client.account, client.event_registry, "submitEvent", args=args)
        assert info.value.code == code

    # Raw revert data, for clients that decode it themselves.
    events = chain.contract("EventRegistryV2", chain.gen2["event_registry"])
    with pytest.raises(ContractCustomError) as raw:
        events.functions.submitEvent(12345, 0, 1, "USD", ts, ZERO32, 0, 0, ZERO32, b"").call({"from": chain.accounts[0].address})
    assert raw.value.data == "0x7e273289" + encode(["uint256"], [12345]).hex()

    # The owner can pause the registry: EnforcedPause comes first.
    chain.admin_call("EventRegistryV2", chain.gen2["event_registry"], "pause")
    with pytest.raises(RpcError) as info:
        send(mid, "USD")
    # EnforcedPause is not in the SDK's code table: TX_REVERTED carrying the selector.
    assert info.value.code == "TX_REVERTED" and "0xd93c0665" in str(info.value)


def test_subscription_ages_into_grace_then_runoff(chain):
    client, result = _activate(chain)
    mid = result.machine_id
    _, subscription, _, _ = _contracts(chain)
    period_end = subscription.functions.subscriptions(mid).call()[2]

    def travel_to(ts: int) -> None:
        chain.w3.provider.make_request("evm_setNextBlockTimestamp", [ts])
        chain.w3.provider.make_request("evm_mine", [])

    travel_to(period_end + 1)
    assert subscription.functions.subscriptionStatus(mid).call() == 2  # Grace: still eligible
    client.submit_event(**_event(chain, mid))
    travel_to(period_end + 7 * 24 * 3600 + 1)
    assert subscription.functions.subscriptionStatus(mid).call() == 3  # Runoff
    with pytest.raises(RpcError) as info:
        client.submit_event(**_event(chain, mid))
    assert info.value.code == "SUBSCRIPTION_NOT_ELIGIBLE"
