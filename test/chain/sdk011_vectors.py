"""Make test/fixtures/sdk/vectors/v1_smart_account_bridge.json by running peaq-os-sdk 0.11.2
(`get_smart_account_address`, `deploy_smart_account`, `bridge_nft` peaq → Base).

Needs the SDK 0.11.2 venv (SDK 0.11.2 and 0.12.1 share an import name)::

    .venv-sdk011/bin/python test/chain/sdk011_vectors.py [--out FILE]

The SDK talks to the test chain (harness.py) through a recording JSON-RPC proxy, so each vector is
what the SDK *sent*: the `data` of its `eth_call`s and the input of the transactions it signed
(decoded from its `eth_sendRawTransaction`). Parameters are fixed below, so a rerun gives the same
file (test_sdk011_vectors.py checks that the committed file is what the SDK sends today).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402

from peaq_os_sdk import PeaqosClient  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
OUT = HERE.parents[0] / "fixtures" / "sdk" / "vectors" / "v1_smart_account_bridge.json"

# Fixed parameters of every vector.
SMART_ACCOUNT_CASES = [
    {"owner": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "machine": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
     "salt": 0},
    {"owner": "0x90F79bf6EB2c4f870365E785982E1f101E93b906", "machine": "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
     "salt": 115792089237316195423570985008687907853269984665640564039457584007913129639935},
]


class Recorder:
    """A JSON-RPC proxy that records every request it forwards."""

    def __init__(self, upstream: str):
        self.upstream, self.calls = upstream, []
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                req = urllib.request.Request(rec.upstream, data=body, headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    out = r.read()
                msg, answer = json.loads(body), json.loads(out)
                if isinstance(msg, list):
                    rec.calls.extend({**m, "answer": a} for m, a in zip(msg, answer))
                else:
                    rec.calls.append({**msg, "answer": answer})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[dict]:
        out, self.calls = self.calls, []
        return out


def eth_calls(calls: list[dict], to: str) -> list[str]:
    return [c["params"][0]["data"] for c in calls
            if c.get("method") == "eth_call" and c["params"][0].get("to", "").lower() == to.lower()]


def sent_inputs(chain: harness.TestChain, calls: list[dict]) -> list[dict]:
    """The transactions the SDK sent, as the chain holds them (by the hash the node answered)."""
    out = []
    for c in calls:
        if c.get("method") == "eth_sendRawTransaction":
            tx = chain.w3.eth.get_transaction(c["answer"]["result"])
            out.append({"to": tx["to"], "value": str(tx["value"]), "input": "0x" + bytes(tx["input"]).hex()})
    return out


def smart_accounts(chain: harness.TestChain, rec: Recorder) -> list[dict]:
    factory = chain.gen1["machine_account_factory"]
    out = []
    for case in SMART_ACCOUNT_CASES:
        client = client_for(chain, rec, 5)
        rec.take()
        predicted = client.get_smart_account_address(case["owner"], case["machine"], case["salt"])
        get_data = eth_calls(rec.take(), factory)
        deployed = client.deploy_smart_account(case["owner"], case["machine"], case["salt"])
        sent = sent_inputs(chain, rec.take())
        assert predicted == deployed and len(get_data) == 1 and len(sent) == 1, (predicted, deployed, get_data, sent)
        out.append({**case, "salt": str(case["salt"]), "factory": factory, "getAddress_calldata": get_data[0],
                    "createAccount_calldata": sent[0]["input"], "createAccount_to": sent[0]["to"],
                    "account": predicted})
    return out


# (anvil key index of the bridging machine, recipient on Base, raw LayerZero extraOptions)
BRIDGE_CASES = [
    (7, "0x976EA74026E726554dB657fA54763abd0C3a0aa9", b""),
    (8, "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955", bytes.fromhex("0003010011010000000000000000000000000000ea60")),
]


def bridges(chain: harness.TestChain, rec: Recorder) -> list[dict]:
    """Register and mint a Machine NFT for a machine, then bridge it to Base with the SDK."""
    adapter, nft = chain.gen1["machine_nft_adapter"], chain.gen1["machine_nft"]
    out = []
    for index, recipient, options in BRIDGE_CASES:
        client = client_for(chain, rec, index)
        machine_id = client.register_machine()
        client.mint_nft(machine_id, client.address)
        token_id = chain.contract("MachineNFT", nft).functions.tokenIdOf(machine_id).call()
        rec.take()
        tx_hash = client.bridge_nft(token_id, "peaq", "base", recipient, options=options)
        calls = rec.take()
        sent = sent_inputs(chain, calls)
        approve = [t for t in sent if t["to"].lower() == nft.lower()]
        send = [t for t in sent if t["to"].lower() == adapter.lower()]
        assert len(approve) == 1 and len(send) == 1, sent
        get_approved = eth_calls(calls, nft)
        quote = eth_calls(calls, adapter)
        assert len(quote) == 1 and len(get_approved) == 1, (quote, get_approved)
        out.append({"machine": client.address, "token_id": str(token_id), "destination": "base",
                    "dst_eid": harness.LAYERZERO_EIDS["base"], "recipient": recipient,
                    "extra_options": "0x" + options.hex(), "adapter": adapter, "machine_nft": nft,
                    "getApproved_calldata": get_approved[0], "approve_calldata": approve[0]["input"],
                    "quoteSend_calldata": quote[0], "send_calldata": send[0]["input"], "send_value": send[0]["value"]})
        assert tx_hash.removeprefix("0x") == chain.w3.eth.get_block("latest")["transactions"][-1].hex().removeprefix("0x")
    return out


def client_for(chain: harness.TestChain, rec: Recorder, index: int) -> PeaqosClient:
    g1 = chain.gen1
    return PeaqosClient(
        rpc_url=rec.url,
        private_key=harness.ANVIL_KEYS[index],
        identity_registry=g1["identity_registry"],
        identity_staking=g1["identity_staking"],
        event_registry=g1["event_registry"],
        machine_nft=g1["machine_nft"],
        did_registry=harness.PRECOMPILES["did"],
        batch_precompile=harness.PRECOMPILES["batch"],
        machine_account_factory=g1["machine_account_factory"],
        machine_nft_adapter=g1["machine_nft_adapter"],
    )


def make() -> dict:
    assert version("peaq-os-sdk") == "0.11.2", f"run with .venv-sdk011, not peaq-os-sdk {version('peaq-os-sdk')}"
    with harness.TestChain() as chain:
        rec = Recorder(chain.rpc_url)
        try:
            return {
                "sdk": "peaq-os-sdk 0.11.2",
                "how": "test/chain/sdk011_vectors.py: the SDK against the test chain through a recording RPC proxy",
                "smart_account": smart_accounts(chain, rec),
                "bridge": bridges(chain, rec),
            }
        finally:
            rec.server.shutdown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    args.out.write_text(json.dumps(make(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
