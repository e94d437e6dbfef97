#!/usr/bin/env python3
"""The scripts/demo tour: show each thing peaqos_node does once, with what proves it, and one
summary line per second.

  ✓ package    a signed data package of the demo robot, verified by the peaq SDK
  ✓ identity   the machine activated on the (local) peaq chain through ~/activate
  ✓ event      a revenue event through ~/submit_event, with its block
  ✓ rule       the event rule of the demo policy firing on robot data, with its block
  ✓ chunk      the encrypted chunk chain of the topic, verified by the peaq SDK
  ✓ grant      ~/grant_access to a fresh buyer key, which then opens the chunk (SDK decrypt)
  ✓ sale       the topic's chunk sold on the (local) Machine Markets server: the peaq SDK as buyer pairs
               an agent, buys it, pays the node's quote with an ERC-20 transfer, decrypts its delivery;
               the node checked the payment on chain itself and recorded the sale as a revenue event
  ✓ buy        the robot as a buyer: a planner asks ~/market_order for a service; the node searches,
               orders, pays the quote once with an ERC-20 transfer from the machine's account, proves it
               and returns the service's outcome

With --once the tour exits 0 after the last capability (non-interactive runs, the demo test);
without it, the summary line continues until Ctrl-C. Any step that fails ends the tour with
exit 1 and a line saying what did not happen (the node's log is at --node-log).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from peaqos_node.msg import ChunkManifest, DataPackage, TxStatus
from peaqos_node.srv import Activate, GetStatus, GrantAccess, SubmitEvent

NODE = "/peaqos_node"
TOPIC = "/battery_state"
RULE = "battery_readings"
LISTING = "lst_battery_state"
STEP_TIMEOUT = 120.0


class TourFailed(Exception):
    pass


class Tour:
    def __init__(self, node, data_dir: Path, node_log: str, market: dict | None = None):
        self.node = node
        self.market = market
        self.data_dir = data_dir
        self.node_log = node_log
        self.t0 = time.monotonic()
        self.last_summary = 0.0
        self.packages: list[DataPackage] = []
        self.manifests: list[ChunkManifest] = []
        self.tx: dict[str, TxStatus] = {}
        self.clients = {}
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(DataPackage, f"{NODE}/data_packages", self.packages.append, reliable)
        node.create_subscription(ChunkManifest, f"{NODE}/chunks", self.manifests.append, latched)
        node.create_subscription(TxStatus, f"{NODE}/tx_status", lambda m: self.tx.__setitem__(m.intent_id, m), latched)

    # -- plumbing ---------------------------------------------------------------------------
    def say(self, line: str) -> None:
        print(line, flush=True)

    def spin(self, seconds: float) -> None:
        """Spin for `seconds`, printing the summary line once a second."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if time.monotonic() - self.last_summary >= 1.0:
                self.last_summary = time.monotonic()
                self.summary()

    def wait(self, pred, what: str, timeout: float = STEP_TIMEOUT):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = pred()
            if v:
                return v
            self.spin(0.1)
        raise TourFailed(f"timed out waiting for {what} (node log: {self.node_log})")

    def call(self, srv, name: str, timeout: float = STEP_TIMEOUT, resend: bool = False, **fields):
        """Call a service of the node. `resend`: ask again every 10 s (only for calls that are
        safe to repeat: a request sent before discovery matched can be lost)."""
        cli = self.clients.get(name) or self.clients.setdefault(name, self.node.create_client(srv, f"{NODE}/{name}"))
        self.wait(lambda: cli.service_is_ready(), f"{NODE}/{name}", 60)
        req = srv.Request()
        for k, v in fields.items():
            setattr(req, k, v)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            fut = cli.call_async(req)
            try:
                return self.wait(lambda: fut.done() and fut.result(), f"{NODE}/{name} to answer",
                                 10.0 if resend else timeout)
            except TourFailed:
                cli.remove_pending_request(fut)
                if not resend:
                    raise
        raise TourFailed(f"{NODE}/{name} did not answer in {timeout:.0f} s (node log: {self.node_log})")

    def status(self):
        return self.call(GetStatus, "status", resend=True)

    def summary(self) -> None:
        """One line: what the node has done so far (from the topics, no service call)."""
        sealed = [m for m in self.manifests if m.event in ("sealed", "recovered")]
        stored = {(m.topic, m.index) for m in self.manifests if m.event == "stored"}
        included = sum(1 for s in self.tx.values() if s.state == "included")
        self.say(f"  [{time.monotonic() - self.t0:4.0f} s] packages {len(self.packages)} · chunks sealed {len(sealed)},"
                 f" stored {len(stored)} · chain transactions included {included}")

    # -- the tour ---------------------------------------------------------------------------
    def package(self) -> None:
        from peaq_os_sdk.stream.types.data_package import DataPackage as SdkPackage
        from peaq_os_sdk.stream.verification import verify_data_package

        msg = self.wait(lambda: self.packages and self.packages[0], f"a data package on {NODE}/data_packages")
        p = json.loads(msg.package_json)
        verdict = verify_data_package(SdkPackage(
            did=p["did"], timestamp=p["timestamp"], schema_version=p["schemaVersion"],
            sequence_number=p["sequenceNumber"], payload=p["payload"], signature=p["signature"],
            signing_key_id=p["signingKeyId"]))
        if not verdict.valid:
            raise TourFailed(f"the SDK refused package #{msg.sequence_number}: {verdict}")
        pl = p["payload"]
        rules = (f"location {'encrypted' if pl.get('location', {}).get('__encrypted') else 'NOT encrypted'},"
                 f" serial_number {'hashed' if pl.get('serial_number', {}).get('__anonymized') else 'NOT hashed'},"
                 f" cell_voltage {'dropped' if 'cell_voltage' not in pl else 'NOT dropped'}")
        self.say(f"✓ package   {msg.topic} #{msg.sequence_number} signed by {p['did']}; peaq SDK verify_data_package:"
                 f" valid (signer {verdict.signer_did}); field rules: {rules}")

    def identity(self) -> str:
        r = self.call(Activate, "activate", resend=True, machine_type="demo-robot",
                      credential_subject_hex="0x" + json.dumps({"serial": "DEMO-0001"}).encode().hex(),
                      manufacturer="0x3333333333333333333333333333333333333333", tier=0)
        if not r.success:
            raise TourFailed(f"~/activate: {r.error_code} {r.error_field} {r.message}")
        self.say(f"✓ identity  machine {r.machine_id[:12]}… activated on chain by ~/activate ({r.did[:24]}…), tx {r.tx_hash}")
        return r.machine_id

    def event(self, machine_id: str) -> None:
        e = self.call(SubmitEvent, "submit_event", machine_id=machine_id, event_type=0, value="250",
                      currency="EUR", timestamp=int(time.time()) - 5, raw_data=list(b"demo fare"))
        if not e.success:
            raise TourFailed(f"~/submit_event: {e.error_code} {e.error_field} {e.message}")
        self.say(f"✓ event     revenue 2.50 EUR via ~/submit_event: included in block {e.block_number}, tx {e.tx_hash},"
                 f" dataHash {e.data_hash[:18]}…")

    def rule(self) -> None:
        def fired():
            rules = {s.rule: s for s in self.status().event_rules}
            r = rules.get(RULE)
            if r is None:
                raise TourFailed(f"the node has no event rule {RULE!r}: is it running with config/data_event_map.demo.yaml?")
            if r.included == 0:
                return None
            # the rules' events go out as batches (the tour itself sends none)
            return next((s for s in self.tx.values() if s.kind == "batch_submit_events" and s.state == "included"), None)

        s = self.wait(fired, f"event rule {RULE} to fire and its event to be included")
        self.say(f"✓ rule      {RULE}: 25 readings of {TOPIC} became an activity event on chain in block"
                 f" {s.block_number}, tx {s.tx_hash} (raw data: the signed packages it counts)")

    def topic_dir(self) -> Path:
        return self.data_dir / "stream" / TOPIC.strip("/").replace("/", ".")

    def load_chunks(self, upto: int):
        from peaq_os_sdk.stream._internal.frames import _chunk_from_camel

        d = self.topic_dir()
        chunks, data = [], {}
        for i in range(upto + 1):
            c = _chunk_from_camel(json.loads((d / f"{i}.json").read_text()))
            chunks.append(c)
            data[c.index] = (d / f"{i}.bin").read_bytes()
        return chunks, data

    def chunk(self) -> int:
        from peaq_os_sdk.stream.chunking import verify_chunk_chain
        from peaq_os_sdk.stream.types.chunk import ChunkChain

        m = self.wait(lambda: next((m for m in self.manifests if m.event == "stored"), None),
                      f"a chunk of {TOPIC} sealed and stored ({NODE}/chunks)")
        last = max(x.index for x in self.manifests if x.event == "stored" and x.topic == m.topic)
        chunks, data = self.load_chunks(last)
        v = verify_chunk_chain(ChunkChain("", tuple(chunks), chunks[0].signature.machine_did, 0), data)
        if not v.valid:
            raise TourFailed(f"the SDK refused the chunk chain of {TOPIC}: {v}")
        self.say(f"✓ chunk     {TOPIC} chunks 0..{last} sealed (hash-linked, encrypted, Ed25519-signed) and stored at"
                 f" {m.storage_ref}; peaq SDK verify_chunk_chain: valid, {v.total_chunks} chunk(s)")
        return last

    def grant(self, index: int) -> None:
        from nacl.public import PrivateKey
        from peaq_os_sdk.stream.chunking import decrypt_chunk
        from peaq_os_sdk.stream.types.chunk import KeyRecipient

        buyer = PrivateKey.generate()
        buyer_pk = bytes(buyer.public_key).hex()
        r = self.call(GrantAccess, "grant_access", resend=True, topic=TOPIC, buyer_public_key_hex=buyer_pk,
                      first_index=index, last_index=index)
        if not r.success:
            raise TourFailed(f"~/grant_access: {r.error_code} {r.error_field} {r.message}")
        entry = json.loads(Path(r.files[0]).read_text())["entries"][0]
        chunks, data = self.load_chunks(index)
        c = next(c for c in chunks if c.chunk_id == entry["chunkId"])
        b = entry["buyer"]
        plain = decrypt_chunk(chunk=c, recipient_private_key_hex=bytes(buyer).hex(), encrypted_data=data[c.index],
                              recipient_entry=KeyRecipient(b["recipientId"], b["recipientType"], b["algorithm"],
                                                           b["publicKeyHex"], b["wrappedKeyHex"]))
        lines = plain.decode().splitlines()
        seqs = [json.loads(x)["sequenceNumber"] for x in lines]
        self.say(f"✓ grant     ~/grant_access gave buyer key {buyer_pk[:12]}… chunk {index} ({Path(r.files[0]).name});"
                 f" the buyer's own key opens it (peaq SDK decrypt_chunk): {len(lines)} signed packages,"
                 f" #{seqs[0]}..#{seqs[-1]}")

    def sale(self, index: int) -> None:
        """The buyer's side of a sale, with the real SDK; the node (seller) does the rest by itself."""
        from eth_account import Account
        from eth_account.messages import encode_defunct
        from nacl.public import PrivateKey
        from peaq_os_sdk import PeaqosClient
        from peaq_os_sdk.orchestration.agent_pairings import create_agent_pairing, create_agent_pairing_challenge
        from peaq_os_sdk.orchestration.errors import OrchestrationApiError
        from peaq_os_sdk.orchestration.machines import list_machines
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

        # the listing's transfer rail (config/data_event_map.demo.yaml): test USDT to test account #5
        SALE_RAIL = TransferRailDestination(pay_to="0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc", chain="peaq",
                                            token="USDT", token_address="0xf4d9235269a96aadafc9adae454a0618ebe37949")
        m = self.market
        sdk = PeaqosClient(rpc_url=m["rpc_url"], private_key=m["buyer_key"], orchestration_url=m["url"],
                           api_key=m["api_key"])
        buyer_addr = Account.from_key(m["buyer_key"]).address

        def retry(call, what: str, codes: tuple[str, ...]):
            def attempt():
                try:
                    return call()
                except OrchestrationApiError as e:
                    if e.code in codes:
                        return None
                    raise TourFailed(f"{what}: {e.code} {e}") from None
            return self.wait(attempt, what)

        machine = self.wait(lambda: next((x for x in list_machines(sdk).items if x.status == "active"), None),
                            "the node's machine record on the Machine Markets server (onboarding)")
        ch = create_agent_pairing_challenge(sdk, machine.id, CreateAgentPairingChallengeRequest(
            agent_address=buyer_addr, agent_provider="demo-buyer", agent_role="buyer")).item
        sig = Account.sign_message(encode_defunct(text=ch.message), m["buyer_key"]).signature.hex()
        tok = create_agent_pairing(sdk, machine.id, CreateAgentPairingRequest(
            agent_address=buyer_addr, agent_provider="demo-buyer", agent_role="buyer",
            agent_proof=AgentProofInput(challenge_id=ch.challenge_id, signature="0x" + sig.removeprefix("0x")))
        ).item.pairing_token
        chunks, data = self.load_chunks(index)
        chunk = chunks[index]
        buyer = PrivateKey.generate()
        purchase = retry(lambda: create_purchase(
            sdk, pairing_token=tok,
            resource=PurchaseResource(type="stream.listing", listing_id=LISTING,
                                      selection=PurchaseResourceSelection(chunk_ids=(chunk.chunk_id,))),
            buyer=PurchaseBuyerInput(id="demo-buyer", public_key=BuyerPublicKey(
                type="x25519", public_key_hex=bytes(buyer.public_key).hex()))),
            f"listing {LISTING} on the Machine Markets server", ("NOT_FOUND",))
        intent = retry(lambda: create_purchase_payment_intent(sdk, purchase.id, pairing_token=tok,
                                                              rail=TransferPaymentIntentRail(
                                                                  type="transfer", destination=SALE_RAIL)),
                       "the node's quote", ("PURCHASE_NOT_QUOTED",))
        ins = intent.instructions
        paid = transfer_token(sdk, TokenPaymentRequest(seller_address=ins["pay_to"], amount=intent.amount.value,
                                                       token_address=ins["token_address"], chain="peaq",
                                                       order_id=purchase.id))
        self.wait(lambda: self._receipt(sdk, paid.tx_hash), f"payment {paid.tx_hash} mined")
        retry(lambda: submit_purchase_payment_proof(
            sdk, purchase.id, rail="transfer", pairing_token=tok, transaction_hash=paid.tx_hash, chain="peaq",
            token=intent.amount.token, payer_address=buyer_addr, payee_address=ins["pay_to"],
            token_address=ins["token_address"], amount=intent.amount.value, raw_amount=ins["raw_amount"],
            verification_mode="rpc"), "the server to verify the payment", ("PAYMENT_NOT_MINED",))
        d = retry(lambda: get_purchase_delivery(sdk, purchase.id, tok) or None, "the delivery",
                  ("STREAM_DELIVERY_NOT_READY",))
        [access] = d.access
        plain = decrypt_chunk(chunk=chunk, recipient_private_key_hex=bytes(buyer).hex(), recipient_entry=access.buyer,
                              encrypted_data=data[chunk.index])
        rec_file = self.data_dir / "market" / "purchases" / f"{purchase.id}.json"

        def recorded():
            r = json.loads(rec_file.read_text()) if rec_file.exists() else {}
            intent_id = r.get("revenueIntentId")
            if not intent_id:
                return None
            s = self.tx.get(intent_id)
            return (r, s) if s is not None and s.state == "included" else None

        r, s = self.wait(recorded, "the sale's revenue event included on chain")
        self.say(f"✓ sale      {TOPIC} chunk {index} sold as listing {LISTING}: quote {intent.amount.value}"
                 f" {intent.amount.token}, paid by {buyer_addr[:10]}… in tx {paid.tx_hash[:10]}… (the node found it"
                 f" on chain: {r['paymentCheck']}); the buyer decrypted it ({len(plain.splitlines())} signed packages);"
                 f" revenue event in block {s.block_number}, tx {s.tx_hash}")

    def buy(self) -> None:
        """The node as a buyer: a service offered on the (local) Machine Markets server, bought through
        the ~/market_order action the way a planner node would."""
        import urllib.request

        from rclpy.action import ActionClient

        from peaqos_node.action import MarketOrder

        m = self.market
        service = {"id": "svc_demo_classify", "serviceType": "inference", "operation": "classify", "price": "0.5",
                   "currency": "USDT", "tokenAddress": "0xf4d9235269a96aadafc9adae454a0618ebe37949",
                   "payeeAddress": "0x976EA74026E726554dB657fA54763abd0C3a0aa9", "chain": "peaq",
                   "result": {"label": "charging dock", "confidence": 0.97}}
        req = urllib.request.Request(f"{m['url']}/__mock__/market/services", data=json.dumps(service).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=10).read()
        client = ActionClient(self.node, MarketOrder, f"{NODE}/market_order")
        self.wait(client.server_is_ready, "the ~/market_order action")
        steps: list[str] = []
        goal = MarketOrder.Goal(service_type="inference", operation="classify", input_json='{"frame": 1}',
                                budget="1", client_key="demo-buy-1")
        fut = client.send_goal_async(goal, feedback_callback=lambda f: steps.append(f.feedback.step))
        handle = self.wait(lambda: fut.result() if fut.done() else None, "~/market_order to take the goal")
        res = handle.get_result_async()
        r = self.wait(lambda: res.result() if res.done() else None, "the order's outcome").result
        if not r.success:
            raise TourFailed(f"the order failed: {r.error_code} {r.message}")
        outcome = json.loads(r.outcome_json)
        seen = " → ".join(dict.fromkeys(steps))
        self.say(f"✓ buy       ~/market_order bought inference/classify ({seen}): {r.amount} {r.currency} paid once"
                 f" from the machine's account in tx {r.payment_reference[:10]}…, proof accepted on chain;"
                 f" outcome {json.dumps(outcome.get('result'))}")

    @staticmethod
    def _receipt(sdk, tx_hash: str):
        try:
            return sdk.web3.eth.get_transaction_receipt(tx_hash)
        except Exception:  # noqa: BLE001 - not mined yet
            return None

    def run(self) -> None:
        self.say(f"tour: watching {NODE} (its log: {self.node_log})")
        self.package()
        machine_id = self.identity()
        self.event(machine_id)
        self.rule()
        index = self.chunk()
        self.grant(index)
        if self.market:
            self.sale(index)
            self.buy()
        self.say("tour: done — every capability above was checked by the peaq SDK or read back from the chain")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--once", action="store_true", help="exit 0 after the tour instead of summarizing until Ctrl-C")
    ap.add_argument("--data-dir", required=True, type=Path, help="the node's data_dir")
    ap.add_argument("--node-log", default="(the node's output)", help="where the node logs, for error messages")
    ap.add_argument("--market", type=Path,
                    help="JSON {url, api_key, rpc_url, buyer_key} of the local Machine Markets server: adds the sale step")
    args = ap.parse_args()
    market = json.loads(args.market.read_text()) if args.market else None
    # Ctrl-C is ours to handle (KeyboardInterrupt, then a clean shutdown): rclpy's own handler
    # would be triggered again by the second SIGINT scripts/demo sends on exit and print
    # "rcl_trigger_guard_condition() failed".
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("demo_tour")
    tour = Tour(node, args.data_dir, args.node_log, market)
    code = 0
    try:
        tour.run()
        if not args.once:
            tour.say("demo running (Ctrl-C stops): one summary line per second")
            while True:
                tour.spin(1.0)
    except TourFailed as e:
        tour.say(f"✗ tour: {e}")
        code = 1
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
