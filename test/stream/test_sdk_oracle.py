"""pytest: the `peaqos-stream` binary against the real peaq-os-sdk 0.12.1 stream functions.

Run: /work/main/.venv/bin/python -m pytest test/stream -q
Needs the binary: `CARGO_TARGET_DIR=/tmp/target-stream cargo build -p peaqos_stream`
(or set PEAQOS_STREAM_BIN). Skips if it is absent.
"""
import json
import os
import subprocess
import sys

import pytest
from nacl.public import PrivateKey

sys.path.insert(0, os.path.dirname(__file__))
import sdk_oracle  # noqa: E402

from peaq_os_sdk.stream.chunking import decrypt_chunk, verify_chunk_chain  # noqa: E402
from peaq_os_sdk.stream.types.chunk import ChunkChain  # noqa: E402

BIN = os.environ.get("PEAQOS_STREAM_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "peaqos-stream")
SECRET = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
OWNER_SK = "11" * 32
BUYER_SK = "22" * 32

def run(*args, stdin=None, check=True):
    assert os.path.exists(BIN), f"{BIN} not built: `cargo build -p peaqos_stream` (scripts/test builds it), or set PEAQOS_STREAM_BIN"
    p = subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, env={**os.environ, "PEAQOS_PRIVATE_KEY": SECRET})
    if check and p.returncode != 0:
        raise AssertionError(p.stderr)
    return p


def lines(n):
    return [json.dumps({"did": "did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "payload": {"n": i, "city": "Z\u00fcrich"}, "sequenceNumber": i}, sort_keys=True, separators=(",", ":")) for i in range(n)]


@pytest.fixture
def chain(tmp_path):
    data = tmp_path / "data"
    owner_pk = sdk_oracle.pk_hex(OWNER_SK)
    out = json.loads(run("append", "--data-dir", str(data), "--topic", "/robot/odom", "--owner-pk", owner_pk, "--max-messages", "4", stdin="\n".join(lines(10)) + "\n").stdout)
    assert out["sealed"] == [0, 1, 2]
    return data, data / "stream" / "robot.odom"  # --data-dir is the node's data_dir


def test_sdk_verifies_and_decrypts_our_chain(chain):
    _, tdir = chain
    chunks, data = sdk_oracle.load_dir(str(tdir))
    v = verify_chunk_chain(ChunkChain("", tuple(chunks), chunks[0].signature.machine_did, 0), data)
    assert v.valid and v.total_chunks == 3
    got = []
    for c in chunks:
        owner = next(r for r in c.encryption.key_recipients if r.recipient_type == "owner")
        got += decrypt_chunk(chunk=c, recipient_private_key_hex=OWNER_SK, recipient_entry=owner, encrypted_data=data[c.index]).decode().splitlines()
    assert got == lines(10)


def test_our_grant_decrypts_with_sdk_and_cli(chain, tmp_path):
    data, tdir = chain
    buyer_pk = sdk_oracle.pk_hex(BUYER_SK)
    run("grant", "--data-dir", str(data), "--topic", "/robot/odom", "--buyer-pk", buyer_pk, "--range", "1..2", "--out", str(tmp_path / "g"))
    gfile = tmp_path / "g" / f"{buyer_pk}-1.json"
    g = json.loads(gfile.read_text())
    assert g["schemaVersion"] == "peaq.stream.buyer-access.v1" and len(g["entries"]) == 2
    chunks, data_by_index = sdk_oracle.load_dir(str(tdir))
    by_id = {c.chunk_id: c for c in chunks}
    got = []
    for e in g["entries"]:
        c = by_id[e["chunkId"]]
        got += decrypt_chunk(chunk=c, recipient_private_key_hex=BUYER_SK, recipient_entry=sdk_oracle.kr_from_wire(e["buyer"]), encrypted_data=data_by_index[c.index]).decode().splitlines()
    assert got == lines(10)[4:]
    skf = tmp_path / "buyer.key"
    skf.write_text(BUYER_SK)
    assert run("decrypt", "--grant", str(gfile), "--secret-key-file", str(skf), str(tdir)).stdout.splitlines() == lines(10)[4:]
    other = tmp_path / "other.key"
    other.write_text(bytes(PrivateKey.generate()).hex())
    p = run("decrypt", "--grant", str(gfile), "--secret-key-file", str(other), str(tdir), check=False)
    assert p.returncode == 1 and "grant is for another key" in p.stderr


def test_cli_verifies_sdk_chain_and_names_tampering(tmp_path):
    d = tmp_path / "sdk" / "topic"
    sdk_oracle.build(str(d), "01" * 32, "02" * 32, "03" * 32, "05" * 32, BUYER_SK)
    assert json.loads(run("verify", str(d)).stdout)[0]["chunks"] == 5
    b = bytearray((d / "3.bin").read_bytes())
    b[-1] ^= 1
    (d / "3.bin").write_bytes(bytes(b))
    p = run("verify", str(d), check=False)
    assert p.returncode == 1 and "chunk index 3" in p.stderr and "hash_mismatch" in p.stderr


def test_upload_local_records_storage_ref(chain, tmp_path):
    data, tdir = chain
    cfg = tmp_path / "dest.json"
    cfg.write_text(json.dumps({"kind": "local", "dir": str(tmp_path / "store")}))
    out = json.loads(run("upload", "--data-dir", str(data), "--topic", "/robot/odom", "--destination", str(cfg)).stdout)
    assert [s[0] for s in out["stored"]] == [0, 1, 2]
    env = json.loads((tdir / "1.json").read_text())
    assert env["storageRef"].startswith("file://") and (tmp_path / "store" / "robot.odom" / "chunk-1.bin").exists()
    run("verify", str(tdir))
