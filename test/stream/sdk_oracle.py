#!/usr/bin/env python3
"""Oracle helper: run the real peaq-os-sdk 0.12.1 stream functions on chunk directories written
by peaqos_stream (and build SDK chains for peaqos_stream to check).

Used by `src/stream/tests/sdk_oracle.rs` (and test_sdk_oracle.py). Prints one JSON object.

  sdk_oracle.py check <topic_dir> <owner_sk_hex> <buyer_sk_hex> <grant_file> <sdk_grant_out>
      verify_chunk_chain over <n>.json/<n>.bin; decrypt_chunk of every chunk with the owner key;
      decrypt_chunk with every entry of our grant file (buyer key); write SDK-made buyer access
      entries (create_buyer_access_entry with the owner key) for the same buyer to <sdk_grant_out>.
  sdk_oracle.py build <out_dir> <owner_sk> <operator_sk> <machine_sk> <ed25519_sk> <buyer_sk>
      build_chunk_chain with the SDK (real randomness) and write <n>.json (camelCase) / <n>.bin,
      plus buyer-grant.json (SDK build_buyer_access_files, wire form) and plain.bin (the input).
"""
import hashlib
import json
import os
import sys
from dataclasses import asdict

from nacl.public import PrivateKey

from peaq_os_sdk.stream._internal.frames import _chunk_from_camel, _chunk_to_camel
from peaq_os_sdk.stream.buyer_access import build_buyer_access_files, create_buyer_access_entry
from peaq_os_sdk.stream.chunking import build_chunk_chain, decrypt_chunk, verify_chunk_chain
from peaq_os_sdk.stream.types.build_chunk_chain_params import BuildChunkChainParams
from peaq_os_sdk.stream.types.chunk import ChunkChain, ChunkingConfig, KeyRecipient


def pk_hex(sk_hex):
    return bytes(PrivateKey(bytes.fromhex(sk_hex)).public_key).hex()


def load_dir(d):
    idx = sorted(int(n[:-5]) for n in os.listdir(d) if n.endswith(".json") and n[:-5].isdigit())
    chunks, data = [], {}
    for i in idx:
        with open(os.path.join(d, f"{i}.json")) as f:
            c = _chunk_from_camel(json.load(f))
        chunks.append(c)
        with open(os.path.join(d, f"{i}.bin"), "rb") as f:
            data[c.index] = f.read()
    return chunks, data


def kr_from_wire(b):
    return KeyRecipient(b["recipientId"], b["recipientType"], b["algorithm"], b["publicKeyHex"], b["wrappedKeyHex"])


def check(topic_dir, owner_sk, buyer_sk, grant_file, sdk_grant_out):
    chunks, data = load_dir(topic_dir)
    chain = ChunkChain(source_hash="", chunks=tuple(chunks), did=chunks[0].signature.machine_did, chunk_size=0)
    v = verify_chunk_chain(chain, data)
    out = {"verify": asdict(v), "owner_plaintext_sha256": [], "buyer_plaintext_sha256": []}
    for c in chunks:
        owner = next(r for r in c.encryption.key_recipients if r.recipient_type == "owner")
        pt = decrypt_chunk(chunk=c, recipient_private_key_hex=owner_sk, recipient_entry=owner, encrypted_data=data[c.index])
        out["owner_plaintext_sha256"].append(hashlib.sha256(pt).hexdigest())
    by_id = {c.chunk_id: c for c in chunks}
    with open(grant_file) as f:
        g = json.load(f)
    for e in g["entries"]:
        c = by_id[e["chunkId"]]
        pt = decrypt_chunk(chunk=c, recipient_private_key_hex=buyer_sk, recipient_entry=kr_from_wire(e["buyer"]), encrypted_data=data[c.index])
        out["buyer_plaintext_sha256"].append(hashlib.sha256(pt).hexdigest())
    entries = [
        asdict(create_buyer_access_entry(chunk=c, owner_private_key_hex=owner_sk, buyer_recipient_id="buyer-1", buyer_public_key_hex=pk_hex(buyer_sk)))
        for c in chunks
    ]
    with open(sdk_grant_out, "w") as f:
        json.dump({"schema_version": "peaq.stream.buyer-access.v1", "buyer_public_key_hex": pk_hex(buyer_sk), "entries": entries}, f)
    print(json.dumps(out))


def build(out_dir, owner_sk, operator_sk, machine_sk, ed_sk, buyer_sk):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ed_pk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ed_sk)).public_key().public_bytes_raw().hex()
    data = os.urandom(5000) + b"peaqOS"
    res = build_chunk_chain(
        BuildChunkChainParams(
            input=data,
            owner_public_key_hex=pk_hex(owner_sk),
            operator_public_key_hex=pk_hex(operator_sk),
            machine_public_key_hex=pk_hex(machine_sk),
            signing_private_key_hex=ed_sk,
            signing_public_key_hex=ed_pk,
            machine_did="did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            machine_key_id="did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266#keys-1",
            did="did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            config=ChunkingConfig(chunk_size=1024),
        )
    )
    os.makedirs(out_dir, exist_ok=True)
    for c in res.chain.chunks:
        with open(os.path.join(out_dir, f"{c.index}.json"), "w") as f:
            json.dump(_chunk_to_camel(c), f, indent=2)
        with open(os.path.join(out_dir, f"{c.index}.bin"), "wb") as f:
            f.write(res.encrypted_data[c.index])
    files = build_buyer_access_files(chunks=res.chain.chunks, owner_private_key_hex=owner_sk, buyer_recipient_id="buyer-1", buyer_public_key_hex=pk_hex(buyer_sk))
    wire = {
        "schemaVersion": files[0].schema_version,
        "buyerPublicKeyHex": files[0].buyer_public_key_hex,
        "entries": [{"chunkId": e.chunk_id, "buyer": {"recipientId": e.buyer.recipient_id, "recipientType": e.buyer.recipient_type, "algorithm": e.buyer.algorithm, "publicKeyHex": e.buyer.public_key_hex, "wrappedKeyHex": e.buyer.wrapped_key_hex}} for f in files for e in f.entries],
    }
    with open(os.path.join(out_dir, "..", "sdk-buyer-grant.json"), "w") as f:
        json.dump(wire, f)
    with open(os.path.join(out_dir, "..", "plain.bin"), "wb") as f:
        f.write(data)
    print(json.dumps({"chunks": len(res.chain.chunks), "source_hash": res.chain.source_hash}))


def batching(buyer_pk_hex, n_entries, max_size):
    """Batching of the SDK for synthetic entries (file names and entry counts)."""
    from peaq_os_sdk.stream import buyer_access as ba
    from peaq_os_sdk.stream.types.buyer_access import BuyerAccessEntry

    entries = [BuyerAccessEntry(chunk_id="0x" + f"{i:064x}", buyer=KeyRecipient("buyer-1", "buyer", "x25519-sealedbox", buyer_pk_hex, "ab" * 80)) for i in range(n_entries)]
    orig = ba.create_buyer_access_entry
    it = iter(entries)
    ba.create_buyer_access_entry = lambda **kw: next(it)
    try:
        files = ba.build_buyer_access_files(chunks=list(range(n_entries)), owner_private_key_hex="", buyer_recipient_id="buyer-1", buyer_public_key_hex=buyer_pk_hex, max_file_size=max_size)
    finally:
        ba.create_buyer_access_entry = orig
    print(json.dumps([[f.file_name, len(f.entries)] for f in files]))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"check": check, "build": build, "batching": lambda a, b, c: batching(a, int(b), int(c))}[cmd](*args)
