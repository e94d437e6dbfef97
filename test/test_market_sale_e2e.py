"""A sale end to end, with real parts: a real ROS 2 graph, the node with its chain client on the local
test chain (anvil, test/chain) holding a test ERC-20 at peaq's USDT address, the local orchestrator
(test/market/orchestrator.py, verifying payment proofs on that chain), and the real peaq-os-sdk 0.12.1 as
the buyer: it pairs an agent, buys a time range of a streamed topic, pays it with its own ERC-20
transfer, proves it, fetches its delivery and decrypts exactly the chunks it bought with
``decrypt_chunk``. The sale becomes one revenue event on chain whose dataHash is keccak256 of the sale
receipt, also after a ``kill -9`` of the node. A second purchase "paid" with the same transaction (the
server takes a ``recorded`` proof on the buyer's word) is refused by the node's own on-chain check."""
from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import rclpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "chain"))
sys.path.insert(0, str(ROOT / "test" / "stream"))

import harness  # noqa: E402
from peaqos_harness import DEMO_KEY, NodeProcess, free_port, wait_until  # noqa: E402
from test_chain_services_e2e import Caller, activate_gen2  # noqa: E402
from test_events_e2e import chain_events  # noqa: E402
from test_market_e2e import API_KEY, OK, Diagnostics, Orchestrator, assert_no_secrets, market_params  # noqa: E402

USDT = "0xf4d9235269a96aadafc9adae454a0618ebe37949"  # peaq USDT in the SDK's token registry (6 decimals)

SALE_POLICY = """schema_version: 1
topics:
  - topic: /market_cam
    type: std_msgs/msg/String
    qos: reliable
    stream:
      chunk: {{max_messages: 1}}
      sale:
        price: "0.25"
        currency: USDT
        payment_rails:
          - {{type: transfer, chain: peaq, token: USDT, pay_to: "{pay_to}", token_address: "{token}"}}
"""


def value_of(fn, timeout: float, what: str, node: NodeProcess):
    """Poll ``fn`` until it returns something truthy, and return that (fails naming ``what``)."""
    box = []

    def pred() -> bool:
        v = fn()
        if v:
            box.append(v)
        return bool(v)

    wait_until(pred, timeout, what, nodes=node)
    return box[-1]


def http_get(url: str, token: str | None, headers: dict | None = None, method: str = "GET"):
    """(status, lower-cased headers, body) of one request to the node's delivery endpoint."""
    req = urllib.request.Request(url, method=method, headers={**(headers or {}),
                                                             **({"authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def chunk_times(topic_dir: Path) -> dict[int, tuple[int, int]]:
    out = {}
    for f in topic_dir.glob("*.meta.json"):
        m = json.loads(f.read_text())
        first = m.get("firstAppendMs", m.get("first_append_ms"))
        last = m.get("lastAppendMs", m.get("last_append_ms"))
        out[int(f.name.split(".")[0])] = (first, last)
    return out


@pytest.fixture
def sale_chain():
    with harness.TestChain() as chain:
        yield chain


def test_the_sdk_buys_pays_on_chain_and_decrypts_and_the_sale_is_one_revenue_event(tmp_path, sale_chain, ros_node):
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from nacl.public import PrivateKey
    from peaq_os_sdk import PeaqosClient
    from peaq_os_sdk.orchestration.agent_pairings import create_agent_pairing, create_agent_pairing_challenge
    from peaq_os_sdk.orchestration.errors import OrchestrationApiError
    from peaq_os_sdk.orchestration.purchases import (create_purchase, create_purchase_payment_intent,
                                                     get_purchase_delivery, submit_purchase_payment_proof)
    from peaq_os_sdk.orchestration.types.agent_pairing import (AgentProofInput, CreateAgentPairingChallengeRequest,
                                                               CreateAgentPairingRequest)
    from peaq_os_sdk.orchestration.types.purchases import (BuyerPublicKey, PurchaseBuyerInput, PurchaseResource,
                                                           PurchaseResourceSelection, TransferPaymentIntentRail,
                                                           TransferRailDestination)
    from peaq_os_sdk.stream.chunking import decrypt_chunk
    from peaq_os_sdk.stream.payment import transfer_token
    from peaq_os_sdk.stream.types.payment import TokenPaymentRequest
    from sdk_oracle import load_dir
    from std_msgs.msg import String
    from web3 import Web3

    chain = sale_chain
    buyer_key = chain.describe()["accounts"][3]["private_key"]
    buyer_addr = Account.from_key(buyer_key).address
    payee = chain.describe()["accounts"][5]["address"]
    token = chain.place_token(USDT, {buyer_addr: 1_000 * 10**6})
    orch = Orchestrator(tmp_path, "--lease-ttl", "2", "--rpc-url", chain.rpc_url).start()
    policy = tmp_path / "policy.yaml"
    policy.write_text(SALE_POLICY.format(pay_to=payee, token=USDT))
    params = market_params(tmp_path, orch, **{
        "chain.enabled": "true", "chain.rpc_urls": f"['{chain.rpc_url}']", "chain.receipt_timeout": "30.0",
        "policy_file": str(policy), "market.purchase_poll_interval": "0.3", "market.payment_confirmations": "1",
        "market.delivery.http_listen": f"127.0.0.1:{free_port()}"})
    data_dir = Path(params["data_dir"])
    diags = Diagnostics(ros_node)
    node = NodeProcess(tmp_path, params).start()
    try:
        # the machine is activated on chain through ~/activate; onboarding follows by itself
        c = Caller(ros_node, proc=node)
        mid = int(activate_gen2(c).machine_id)
        _, v, _ = diags.wait("listed and connected", lambda lvl, v, m: lvl == OK and v["listings_published"] == "1"
                             and v["control_connected"] == "true", node, timeout=60)
        [listing] = orch.state()["listings"]

        # a streamed topic: chunks of one frame each, in three bursts; the buyer buys the middle one
        pub = ros_node.create_publisher(String, "/market_cam", 10)
        cam_dir = data_dir / "stream" / "market_cam"

        def burst(tag: str, want: int) -> None:
            n = 0
            while len(list(cam_dir.glob("*.bin"))) < want:
                pub.publish(String(data=f"{tag} frame {n}"))
                n += 1
                rclpy.spin_once(ros_node, timeout_sec=0.1)
                assert n < 300, f"chunks not sealed; node log:\n{node.output()[-4000:]}"
            time.sleep(0.3)

        burst("early", 2)
        burst("bought", 4)
        burst("late", 6)
        times = chunk_times(cam_dir)
        bought_idx = [i for i in sorted(times) if 2 <= i <= 3]
        start, end = times[bought_idx[0]][0], times[bought_idx[-1]][1]
        # (a chunk sealed between two bursts may straddle them; select by the times of chunks 2..3)
        chunks, blobs = load_dir(cam_dir)
        expected = [ch.chunk_id for ch in chunks if times[ch.index][0] <= end and times[ch.index][1] >= start]

        # --- the buyer (the real SDK): pair an agent, buy the time range -----------------------------
        sdk = PeaqosClient(rpc_url=chain.rpc_url, private_key=buyer_key, orchestration_url=orch.url, api_key=API_KEY)
        ch = create_agent_pairing_challenge(sdk, v["machine_id"], CreateAgentPairingChallengeRequest(
            agent_address=buyer_addr, agent_provider="peaqos-e2e", agent_role="buyer")).item
        sig = Account.sign_message(encode_defunct(text=ch.message), buyer_key).signature.hex()
        pairing = create_agent_pairing(sdk, v["machine_id"], CreateAgentPairingRequest(
            agent_address=buyer_addr, agent_provider="peaqos-e2e", agent_role="buyer",
            agent_proof=AgentProofInput(challenge_id=ch.challenge_id, signature="0x" + sig.removeprefix("0x")))).item
        tok = pairing.pairing_token
        buyer_sk = PrivateKey.generate()
        buyer_in = PurchaseBuyerInput(id="buyer-e2e", public_key=BuyerPublicKey(
            type="x25519", public_key_hex=bytes(buyer_sk.public_key).hex()))
        resource = PurchaseResource(type="stream.listing", listing_id=listing["id"], selection=PurchaseResourceSelection(
            topic="/market_cam", start_time=iso_ms(start), end_time=iso_ms(end)))
        purchase = create_purchase(sdk, resource=resource, buyer=buyer_in, pairing_token=tok)
        listed = listing["paymentRails"][0]["destination"]  # the rail the buyer picks from the listing
        rail = TransferPaymentIntentRail(type="transfer", destination=TransferRailDestination(
            pay_to=listed["payTo"], chain=listed["chain"], token=listed["token"], token_address=listed["tokenAddress"]))

        def intent():
            try:
                return create_purchase_payment_intent(sdk, purchase.id, rail=rail, pairing_token=tok)
            except OrchestrationApiError as e:
                if e.code == "PURCHASE_NOT_QUOTED":
                    return None
                raise

        it = value_of(intent, 30, "the seller's quote", node)
        quote = next(p for p in orch.state()["purchases"] if p["id"] == purchase.id)["quote"]
        assert quote["chunkIds"] == expected, (quote, expected)
        assert it.amount.value == f"{0.25 * len(expected):g}" and it.amount.token == "USDT"
        ins = it.instructions
        assert ins["pay_to"].lower() == payee.lower() and ins["token_address"].lower() == USDT

        # nothing before payment
        with pytest.raises(OrchestrationApiError) as e:
            get_purchase_delivery(sdk, purchase.id, tok)
        assert e.value.code == "STREAM_DELIVERY_NOT_READY"

        # --- pay with the SDK's own ERC-20 transfer, prove it (rpc-verified by the server) -------------
        paid = transfer_token(sdk, TokenPaymentRequest(seller_address=Web3.to_checksum_address(payee),
                                                       amount=it.amount.value, token_address=USDT, chain="peaq",
                                                       order_id=purchase.id))
        chain.w3.eth.wait_for_transaction_receipt(paid.tx_hash, timeout=30)
        assert token.functions.balanceOf(Web3.to_checksum_address(payee)).call() == int(ins["raw_amount"])
        proof = submit_purchase_payment_proof(
            sdk, purchase.id, rail="transfer", pairing_token=tok, transaction_hash=paid.tx_hash, chain="peaq",
            token="USDT", payer_address=buyer_addr, payee_address=payee, token_address=USDT,
            amount=it.amount.value, raw_amount=ins["raw_amount"], verification_mode="rpc")
        assert proof.payment_status == "verified" and proof.receipt.verification_mode == "rpc"

        def delivered():
            try:
                d = get_purchase_delivery(sdk, purchase.id, tok)
            except OrchestrationApiError as e:
                if e.code == "STREAM_DELIVERY_NOT_READY":
                    return None
                raise
            return d if d.access else None

        d = value_of(delivered, 60, "the buyer's delivery", node)
        assert sorted(a.chunk_id for a in d.access) == sorted(expected)
        by_id = {ch.chunk_id: ch for ch in chunks}
        for a in d.access:
            chunk = by_id[a.chunk_id]
            pt = decrypt_chunk(chunk=chunk, recipient_private_key_hex=bytes(buyer_sk).hex(),
                               recipient_entry=a.buyer, encrypted_data=blobs[chunk.index])
            assert b"bought frame" in pt or b"frame" in pt

        # --- the same ciphertexts straight from the robot: the local delivery endpoint ---------------
        assert (d.delivery.mode, d.delivery.transport_id) == ("p2p", "peaqos-http")
        base, _, frag = d.delivery.connect.url.partition("#bearer=")
        assert frag and len(frag) == 64 and base == f"http://{params['market.delivery.http_listen']}/purchases/{purchase.id}"
        got = http_get(base, frag)
        assert got[0] == 200 and sorted(c["chunkId"] for c in json.loads(got[2])["chunks"]) == sorted(expected)
        for cid in expected:
            ch = by_id[cid]
            blob = blobs[ch.index]
            half = len(blob) // 2
            a = http_get(f"{base}/chunks/{cid}", frag, {"range": f"bytes=0-{half - 1}"})
            b = http_get(f"{base}/chunks/{cid}", frag, {"range": f"bytes={half}-"})
            assert (a[0], b[0]) == (206, 206) and a[1]["content-range"] == f"bytes 0-{half - 1}/{len(blob)}"
            assert a[2] + b[2] == blob, "the two ranges are the ciphertext"
            env = http_get(f"{base}/chunks/{cid}/envelope", frag)
            assert env[0] == 200 and json.loads(env[2])["chunkId"] == cid
            assert http_get(f"{base}/chunks/{cid}", frag, {"range": f"bytes={len(blob)}-"})[0] == 416
            head = http_get(f"{base}/chunks/{cid}", frag, method="HEAD")
            assert head[0] == 200 and int(head[1]["content-length"]) == len(blob) and head[2] == b""
        not_bought = next(ch.chunk_id for ch in chunks if ch.chunk_id not in expected)
        assert http_get(f"{base}/chunks/{not_bought}", frag)[0] == 403
        assert http_get(base, "0" * 64)[0] == 401 and http_get(base, None)[0] == 401
        assert http_get(base.rsplit("/", 1)[0] + "/pur_unknown", frag)[0] in (401, 404)

        # --- the sale, recorded on chain once; keccak256(raw_data) is the receipt --------------------
        rec_path = data_dir / "market" / "purchases" / f"{purchase.id}.json"
        rec = value_of(lambda: (r := json.loads(rec_path.read_text()))["state"] == "recorded" and r,
                       60, "the purchase recorded", node)
        assert rec["paymentCheck"].startswith("chain: block ") and buyer_addr.lower() in rec["paymentCheck"]
        receipt = {"amount": it.amount.value, "buyerId": "buyer-e2e", "chunkIds": expected, "currency": "USDT",
                   "listingId": listing["id"], "machineId": v["machine_id"],
                   "payment": {"rail": "transfer", "reference": paid.tx_hash}, "purchaseId": purchase.id,
                   "schema": "peaqos.market.sale.v1", "topic": "/market_cam"}
        raw = json.dumps(receipt, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        want_hash = Web3.keccak(raw)

        def sale_events():
            return [e for e in chain_events(chain, mid) if bytes(e[4]) == want_hash]

        [ev] = value_of(sale_events, 60, "the revenue event on chain", node)
        assert (ev[0], ev[1], ev[9]) == (mid, 0, "USDT")  # machine, revenue, currency
        assert ev[2] == round(0.25 * len(expected) * 100)  # value in minor units (cents)
        assert ev[5] == 1 and "0x" + bytes(ev[7]).hex() == paid.tx_hash.lower()  # on-chain verifiable, the payment

        # --- the same transaction again, "recorded" on the buyer's word: the node refuses -------------
        second = create_purchase(sdk, resource=resource, buyer=buyer_in, pairing_token=tok)
        value_of(intent_for(sdk, second.id, tok, create_purchase_payment_intent, rail, OrchestrationApiError),
                 30, "the second quote", node)
        submit_purchase_payment_proof(sdk, second.id, rail="transfer", pairing_token=tok,
                                      transaction_hash=paid.tx_hash, verification_mode="recorded")
        rec2_path = data_dir / "market" / "purchases" / f"{second.id}.json"
        rec2 = value_of(lambda: rec2_path.exists() and (r := json.loads(rec2_path.read_text()))["state"] == "refused"
                        and r, 30, "the reused payment refused", node)
        assert f"already settled purchase {purchase.id}" in rec2["refusal"], rec2
        with pytest.raises(OrchestrationApiError) as e:
            get_purchase_delivery(sdk, second.id, tok)
        assert e.value.code == "STREAM_DELIVERY_NOT_READY"
        # the first purchase's token does not open the second one
        assert http_get(base.rsplit("/", 1)[0] + f"/{second.id}", frag)[0] == 401
    finally:
        node.kill9()

    # after a kill -9 and a restart: still exactly one revenue event for the sale
    node2 = NodeProcess(tmp_path, params, name="node2").start()
    try:
        time.sleep(3)
        assert len(sale_events()) == 1
    finally:
        assert node2.stop() == 0, node2.output()[-4000:]
        orch.stop()
    token_file = data_dir / "market" / "agent_token"
    for nd in (node, node2):
        assert_no_secrets(nd, data_dir, [API_KEY, token_file.read_text().strip(), tok, DEMO_KEY])


def intent_for(sdk, pid, tok, create, rail, err_cls):
    def f():
        try:
            return create(sdk, pid, rail=rail, pairing_token=tok)
        except err_cls as e:
            if e.code == "PURCHASE_NOT_QUOTED":
                return None
            raise
    return f
