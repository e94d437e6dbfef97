"""End to end in a real ROS 2 graph: peaqos_node streams topics into encrypted chunk chains; the
real peaq SDK (peaq-os-sdk 0.12.1) verifies the chains, decrypts with the owner key and with
buyer grants from ~/grant_access; kill -9 with an open chunk and pending uploads loses nothing
and doubles nothing; an S3 destination (a real moto_server on 127.0.0.1) receives the
ciphertexts."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from peaqos_harness import (DEMO_DID, NodeProcess, ROOT, free_port, log_tails, package_log, poll_until, scaled, sdk_verify,
                            wait_until)

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, Imu  # noqa: E402

from peaqos_node.msg import ChunkManifest, DataPackage  # noqa: E402
from peaqos_node.srv import GetStatus, GrantAccess, SealDataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "stream"))
from sdk_oracle import kr_from_wire, load_dir  # noqa: E402

from nacl.public import PrivateKey  # noqa: E402
from peaq_os_sdk.stream.buyer_access import build_buyer_access_files  # noqa: E402
from peaq_os_sdk.stream.chunking import decrypt_chunk, verify_chunk_chain  # noqa: E402
from peaq_os_sdk.stream.types.chunk import ChunkChain, KeyRecipient  # noqa: E402

OWNER_SK = PrivateKey(bytes(range(1, 33)))
OWNER_PK_HEX = bytes(OWNER_SK.public_key).hex()
OWNER_SK_HEX = bytes(OWNER_SK).hex()


def topic_dir(data_dir: Path, topic: str) -> Path:
    return Path(data_dir) / "stream" / topic.strip("/").replace("/", ".")


def stream_cli() -> str:
    """The peaqos-stream CLI of this package: $PEAQOS_STREAM_BIN (scripts/test), else built
    next to the node when missing."""
    env_bin = os.environ.get("PEAQOS_STREAM_BIN")
    if env_bin and Path(env_bin).exists():
        return env_bin
    target = ROOT / "build" / "peaqos_node" / "cargo"
    exe = target / "release" / "peaqos-stream"
    if not exe.exists():
        env = dict(os.environ, CARGO_TARGET_DIR=str(target))
        subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "peaqos_stream", "--bin", "peaqos-stream"],
                       cwd=ROOT, env=env, check=True, timeout=900)
    return str(exe)


def sdk_chain(d: Path):
    chunks, data = load_dir(d)
    chain = ChunkChain(source_hash="", chunks=tuple(chunks), did=chunks[0].signature.machine_did, chunk_size=0)
    return chunks, data, verify_chunk_chain(chain, data)


def plaintext_lines(d: Path, sk_hex: str = OWNER_SK_HEX) -> list[str]:
    chunks, data = load_dir(d)
    lines = []
    for c in chunks:
        owner = next(r for r in c.encryption.key_recipients if r.recipient_type == "owner")
        pt = decrypt_chunk(chunk=c, recipient_private_key_hex=sk_hex, recipient_entry=owner, encrypted_data=data[c.index])
        assert pt.endswith(b"\n")
        lines += pt.decode().splitlines()
    return lines


def logged(data_dir: Path, topic: str) -> list[str]:
    """The topic's package log, streamed packages (references, written once) read back from
    their chunks."""
    return package_log(data_dir, topic)


class Graph:
    def __init__(self, node, proc: NodeProcess | None = None):
        self.node = node
        self.proc = proc  # the node process under test: its log tail goes into every timeout
        q = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE)
        self.packages: list = []
        self.manifests: list = []
        node.create_subscription(DataPackage, "/peaqos_node/data_packages", self.packages.append, q)
        node.create_subscription(ChunkManifest, "/peaqos_node/chunks", self.manifests.append,
                                 QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.cam = node.create_publisher(Image, "/s/cam", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.imu = node.create_publisher(Imu, "/s/imu", QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE))
        self.clients = {}

    def spin_until(self, pred, timeout=30.0) -> bool:
        return poll_until(pred, timeout, spin=self.node)

    def wait(self, pred, what: str, timeout=30.0) -> None:
        wait_until(pred, timeout, what, nodes=self.proc or (), spin=self.node)

    def wait_matched(self, timeout=20.0):
        self.wait(lambda: self.cam.get_subscription_count() > 0 and self.imu.get_subscription_count() > 0
                  and self.node.count_publishers("/peaqos_node/chunks") > 0, "the node to match the test graph", timeout)

    def call(self, srv, name, req, timeout=30.0):
        if name not in self.clients:
            self.clients[name] = self.node.create_client(srv, name)
        cli = self.clients[name]
        assert cli.wait_for_service(timeout_sec=scaled(15)), f"{name}{log_tails(self.proc or ())}"
        # After a kill -9 the dead server stays in the graph until its lease ends, and a request
        # sent before the new server matched is lost: ask again every few seconds.
        result = []

        def answered() -> bool:
            fut = cli.call_async(req)
            if self.spin_until(fut.done, 5.0):
                result.append(fut.result())
                return True
            cli.remove_pending_request(fut)
            return False

        wait_until(answered, timeout, f"{name} to answer", nodes=self.proc or (), poll=0)
        return result[0]

    def status(self):
        return self.call(GetStatus, "/peaqos_node/status", GetStatus.Request())

    def stream(self, topic):
        return next(s for s in self.status().streams if s.topic == topic)

    def prime(self, timeout=20.0):
        """After a restart the dead node's subscriptions stay matched until their lease ends:
        publish single messages until the new node has received one on each topic."""
        def received() -> bool:
            t = {x.topic: x for x in self.status().topics}
            if t["/s/cam"].received > 0 and t["/s/imu"].received > 0:
                return True
            img = Image(height=1, width=16, encoding="mono8", step=16, data=bytes(16))
            self.cam.publish(img)
            self.imu.publish(Imu())
            self.spin_until(lambda: False, 0.3)
            return False

        wait_until(received, timeout, "the restarted node to receive a message on each topic", nodes=self.proc or (), poll=0)

    def settle(self, topic, timeout=30.0):
        """Wait until `topic`'s packaging is quiet and its stream holds every package; return
        the packages made by this node run (the test's DDS delivery may lose a few under load)."""
        seen = {"last": None, "since": time.monotonic(), "packaged": 0}

        def settled() -> bool:
            st = self.status()
            t = next(x for x in st.topics if x.topic == topic)
            s = next(x for x in st.streams if x.topic == topic)
            now = (t.packaged, t.last_sequence, s.last_sequence)
            if now != seen["last"]:
                seen.update(last=now, since=time.monotonic())
            elif time.monotonic() - seen["since"] > 1.0 and t.last_sequence == s.last_sequence:
                seen["packaged"] = t.packaged
                return True
            self.spin_until(lambda: False, 0.2)
            return False

        wait_until(settled, timeout, lambda: f"the stream of {topic} to settle (last: {brief(self.status())})",
                   nodes=self.proc or (), poll=0)
        return seen["packaged"]

    def publish(self, cam_n: int, imu_hz_per_cam: int, image_bytes: int = 1 << 20, period: float = 0.1):
        img = Image(height=1024, width=image_bytes // 1024, encoding="mono8", step=image_bytes // 1024)
        img.data = bytes((i * 7) & 0xFF for i in range(256)) * (image_bytes // 256)
        t0 = time.monotonic()
        k = 0
        for i in range(cam_n):
            img.header.frame_id = f"cam-{i}"
            self.cam.publish(img)
            for _ in range(imu_hz_per_cam):
                m = Imu()
                m.header.frame_id = f"imu-{k}"
                m.linear_acceleration.x = float(k)
                self.imu.publish(m)
                k += 1
                rclpy.spin_once(self.node, timeout_sec=0)
                time.sleep(period / max(imu_hz_per_cam, 1) / 2)
            while time.monotonic() < t0 + (i + 1) * period:
                rclpy.spin_once(self.node, timeout_sec=0.005)
        return k


def policy(tmp: Path, cam_dest: str = "", imu_dest: str = "", imu_chunk: str = "{max_messages: 100, max_age: 1}") -> Path:
    p = tmp / "policy.yaml"
    p.write_text(f"""\
schema_version: 1
topics:
  - topic: /s/cam
    type: sensor_msgs/msg/Image
    qos: {{reliability: reliable, durability: volatile, depth: 50}}
    queue_size: 100
    stream:
      chunk: {{max_bytes: 4000000, max_age: 2}}
      recipients: {{owner: "{OWNER_PK_HEX}"}}
{cam_dest}
  - topic: /s/imu
    type: sensor_msgs/msg/Imu
    # depth 1000: the executor also converts 1 MiB images; 100 Hz IMU must not overrun the history
    qos: {{reliability: reliable, durability: volatile, depth: 1000}}
    stream:
      chunk: {imu_chunk}
      recipients: {{owner: "{OWNER_PK_HEX}"}}
{imu_dest}
""")
    return p


def test_camera_and_imu_stream_verify_grant_dataset(tmp_path, ros_node):
    data = tmp_path / "data"
    node = NodeProcess(tmp_path, {"policy_file": str(policy(tmp_path)), "data_dir": str(data)}).start()
    g = Graph(ros_node, node)
    try:
        node.wait_for_log("subscribed to /s/imu")
        g.wait_matched()
        g.publish(cam_n=30, imu_hz_per_cam=10)  # 10 Hz × 1 MiB images, 100 Hz IMU, 3 s
        cam_n, imu_n = g.settle("/s/cam"), g.settle("/s/imu")
        assert cam_n >= 27 and imu_n >= 270, (cam_n, imu_n)  # DDS may lose a few under the test's load
        # Every chunk sealed (by size/count, then by age) and stored.
        def done():
            s = {x.topic: x for x in g.status().streams}
            return all(s[t].open_messages == 0 and s[t].upload_backlog == 0 for t in ("/s/cam", "/s/imu"))
        g.wait(done, lambda: f"every chunk sealed and stored (last: {brief(g.status())})")
        st = g.status()
        assert len(st.ed25519_public_key_hex) == 64 and len(st.x25519_public_key_hex) == 64
        cam = g.stream("/s/cam")
        assert cam.chunks_sealed == cam.last_chunk_index + 1 >= cam_n // 3, cam  # 3 × 1.4 MB lines ≥ 4 MB
        assert g.stream("/s/imu").last_chunk_index + 1 >= 3

        # ~/chunks published every sealed chunk's manifest, identical to the envelope on disk.
        g.wait(lambda: len([m for m in g.manifests if m.event == "sealed"]) >= cam.chunks_sealed + 3, "a manifest per sealed chunk")
        for m in g.manifests:
            on_disk = json.loads((topic_dir(data, m.topic) / f"{m.index}.json").read_text())
            pub = json.loads(m.manifest_json)
            on_disk.pop("storageRef", None)
            pub.pop("storageRef", None)
            assert pub == on_disk and m.chunk_id == on_disk["chunkId"]

        # Grant chunks 1..2 of the camera to a buyer.
        buyer = PrivateKey.generate()
        buyer_pk = bytes(buyer.public_key).hex()
        r = g.call(GrantAccess, "/peaqos_node/grant_access",
                   GrantAccess.Request(topic="/s/cam", buyer_public_key_hex=buyer_pk, first_index=1, last_index=2))
        assert r.success, (r.error_code, r.error_field, r.message)
        assert list(r.chunk_indices) == [1, 2] and len(r.files) == 1 and Path(r.files[0]).exists()
        files = json.loads(r.access_files_json)

        # Errors name the field.
        bad = g.call(GrantAccess, "/peaqos_node/grant_access",
                     GrantAccess.Request(topic="/s/cam", buyer_public_key_hex="zz", first_index=0, last_index=0))
        assert (bad.success, bad.error_code, bad.error_field) == (False, "INVALID_ARGUMENT", "buyer_public_key_hex")
        bad = g.call(GrantAccess, "/peaqos_node/grant_access",
                     GrantAccess.Request(topic="/nope", buyer_public_key_hex=buyer_pk))
        assert (bad.success, bad.error_code, bad.error_field) == (False, "UNKNOWN_TOPIC", "topic")
        bad = g.call(GrantAccess, "/peaqos_node/grant_access",
                     GrantAccess.Request(topic="/s/cam", buyer_public_key_hex=buyer_pk, first_index=0, last_index=999))
        assert (bad.success, bad.error_code) == (False, "NOT_FOUND"), bad.message

        # Dataset of all IMU chunks, then a grant by dataset.
        last_imu = g.stream("/s/imu").last_chunk_index
        ds = g.call(SealDataset, "/peaqos_node/seal_dataset", SealDataset.Request(topic="/s/imu", first_index=0, last_index=last_imu))
        assert ds.success, ds.message
        manifest = json.loads(ds.manifest_json)
        assert manifest["machineDid"] == DEMO_DID and len(manifest["chunkIds"]) == last_imu + 1
        assert manifest["merkleRoot"] == ds.merkle_root and Path(ds.path).exists()
        rd = g.call(GrantAccess, "/peaqos_node/grant_access",
                    GrantAccess.Request(topic="/s/imu", buyer_public_key_hex=buyer_pk, dataset=f"0-{last_imu}"))
        assert rd.success, rd.message
        assert [e["chunk_id"] for f in json.loads(rd.access_files_json) for e in f["entries"]] == manifest["chunkIds"]
        # A time range covering the whole run grants every IMU chunk.
        rt = g.call(GrantAccess, "/peaqos_node/grant_access",
                    GrantAccess.Request(topic="/s/imu", buyer_public_key_hex=buyer_pk, from_ms=1, to_ms=int(time.time() * 1000) + 60_000))
        assert rt.success and list(rt.chunk_indices) == list(range(last_imu + 1)), rt.message
        bad = g.call(SealDataset, "/peaqos_node/seal_dataset", SealDataset.Request(topic="/s/imu", first_index=5, last_index=1))
        assert (bad.success, bad.error_code, bad.error_field) == (False, "INVALID_ARGUMENT", "last_index")
    finally:
        assert node.stop() == 0, node.output()[-3000:]

    # The SDK accepts both chains.
    for t in ("/s/cam", "/s/imu"):
        chunks, _, v = sdk_chain(topic_dir(data, t))
        assert v.valid, (t, v)
        assert all(c.signature.machine_did == DEMO_DID for c in chunks)
    # The CLI too, and the dataset manifest.
    cli = stream_cli()
    for t in ("/s/cam", "/s/imu"):
        out = subprocess.run([cli, "verify", str(topic_dir(data, t))], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr

    # The decrypted plaintext is exactly the package log, in order, once: one package per line.
    for t, n in (("/s/cam", cam_n), ("/s/imu", imu_n)):
        lines = plaintext_lines(topic_dir(data, t))
        assert lines == logged(data, t)
        assert [json.loads(x)["sequenceNumber"] for x in lines] == list(range(n))
    published = {(p.topic, p.sequence_number): p.package_json for p in g.packages}
    cam_lines = plaintext_lines(topic_dir(data, "/s/cam"))
    for i, line in enumerate(cam_lines):
        if ("/s/cam", i) in published:
            assert published[("/s/cam", i)] == line
    for line in cam_lines[:3] + plaintext_lines(topic_dir(data, "/s/imu"))[:20]:
        res = sdk_verify(line)
        assert res.valid and res.signer_did == DEMO_DID, res

    # The buyer grant decrypts exactly the granted chunks (1, 2) and no others.
    chunks, blobs = load_dir(topic_dir(data, "/s/cam"))
    by_id = {c.chunk_id: c for c in chunks}
    entries = [e for f in files for e in f["entries"]]
    assert [by_id[e["chunk_id"]].index for e in entries] == [1, 2]
    for e in entries:
        c = by_id[e["chunk_id"]]
        pt = decrypt_chunk(chunk=c, recipient_private_key_hex=bytes(buyer).hex(), recipient_entry=KeyRecipient(**e["buyer"]),
                           encrypted_data=blobs[c.index])
        assert hashlib.sha256(pt).hexdigest() == c.plaintext_hash.removeprefix("0x")
    # The on-disk grant file (wire form) works the same.
    wire = json.loads(Path(r.files[0]).read_text())
    assert [e["chunkId"] for e in wire["entries"]] == [e["chunk_id"] for e in entries]
    kr = kr_from_wire(wire["entries"][0]["buyer"])
    for c in chunks:
        if c.index in (1, 2):
            continue
        with pytest.raises(Exception):
            decrypt_chunk(chunk=c, recipient_private_key_hex=bytes(buyer).hex(), recipient_entry=kr, encrypted_data=blobs[c.index])
    # Same shape as the SDK's own build_buyer_access_files for the same chunks (owner key).
    sdk_files = [asdict(f) for f in build_buyer_access_files(chunks=[by_id[e["chunk_id"]] for e in entries],
                                                             owner_private_key_hex=OWNER_SK_HEX, buyer_recipient_id="buyer-1",
                                                             buyer_public_key_hex=buyer_pk)]
    strip = lambda fs: [{**f, "entries": [{**e, "buyer": {**e["buyer"], "wrapped_key_hex": None}} for e in f["entries"]]} for f in fs]
    assert strip(sdk_files) == strip(files)


def brief(st):
    return ([(s.topic, s.last_sequence, s.open_messages, s.last_chunk_index, s.chunks_sealed, s.replayed, s.handover_dropped)
             for s in st.streams], [(t.topic, t.received, t.packaged, t.dropped, t.errors) for t in st.topics])


class WalrusServer:
    """A local publisher + aggregator speaking the documented Walrus shapes (SPEC.md §5.4):
    `PUT /v1/blobs?epochs=N` → `{"newlyCreated": {"blobObject": {"blobId": …}}}`,
    `GET /v1/blobs/{id}` → the bytes."""

    def __init__(self):
        import hashlib as _h
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        blobs = self.blobs = {}

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_PUT(self):
                if not self.path.startswith("/v1/blobs?epochs="):
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers["content-length"]))
                bid = _h.sha256(body).hexdigest()[:43]
                known = bid in blobs
                blobs[bid] = body
                out = json.dumps({"alreadyCertified": {"blobId": bid}} if known
                                 else {"newlyCreated": {"blobObject": {"blobId": bid, "size": len(body)}}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self):
                bid = self.path.removeprefix("/v1/blobs/")
                if bid not in blobs:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-length", str(len(blobs[bid])))
                self.end_headers()
                self.wfile.write(blobs[bid])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def start_moto(port: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("moto_server")
    p = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    try:
        wait_until(listening, 20, f"moto_server to listen on port {port}", poll=0.1)
    except AssertionError:
        p.kill()
        raise
    return p


def test_kill9_open_chunk_pending_upload_then_s3(tmp_path, ros_node):
    """kill -9 with an open chunk, uploads pending (S3 down) and packages logged but not yet in
    the chain → restart: chain intact (SDK + CLI), every logged package once; then moto_server
    receives the ciphertexts and the manifests record the storage references. The open chunk is
    on disk as ciphertext (written once, the package log holds references to it): the restart
    reopens it, cut to what the log acknowledged."""
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    walrus = WalrusServer()
    s3 = (f'      destinations: [{{kind: s3, endpoint: "http://127.0.0.1:{port}", bucket: peaq-chunks, prefix: robot1,'
          f' access_key_id: testing, secret_access_key: "env:STREAM_TEST_S3_SECRET", timeout_secs: 2}}, {{kind: local}},'
          f' {{kind: walrus, publisher_url: "{walrus.url}", aggregator_url: "{walrus.url}", epochs: 3}}]')
    pol = policy(tmp_path, imu_dest=s3, imu_chunk="{max_messages: 100, max_age: 600}")
    data = tmp_path / "data"
    g = Graph(ros_node)
    env = {"STREAM_TEST_S3_SECRET": "testing"}
    node = NodeProcess(tmp_path, {"policy_file": str(pol), "data_dir": str(data)}, env, name="run1").start()
    g.proc = node
    try:
        node.wait_for_log("subscribed to /s/imu")
        g.wait_matched()
        g.publish(cam_n=25, imu_hz_per_cam=10, image_bytes=1 << 16)  # 250 IMU at 100 Hz: 2 sealed + ~50 open
        imu_n = g.settle("/s/imu")
        s = g.stream("/s/imu")
        assert imu_n >= 220 and s.open_messages == imu_n - 200 and s.last_chunk_index == 1 and s.upload_backlog >= 1, s
        assert "peaq-chunks" in s.last_error or "127.0.0.1" in s.last_error, s
        # Each destination has its own queue: Walrus stores the sealed chunks while S3 is down.
        g.wait(lambda: len(walrus.blobs) >= 2, lambda: f"2 Walrus blobs (have {list(walrus.blobs)})", 15)
    finally:
        node.kill9()
    d = topic_dir(data, "/s/imu")
    # Streamed bytes are written once: the open chunk is ciphertext with its wrapped key, no
    # open.jsonl; the log's references into it resolve.
    assert not (d / "open.jsonl").exists()
    assert (d / "2.bin").exists() and (d / "2.key.json").exists() and not (d / "2.json").exists()
    assert len(logged(data, "/s/imu")) == imu_n

    moto = start_moto(port)
    try:
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="peaq-chunks")
        node = NodeProcess(tmp_path, {"policy_file": str(pol), "data_dir": str(data)}, env, name="run2").start()
        g.proc = node
        try:
            node.wait_for_log("subscribed to /s/imu")
            out = node.output()
            assert "open chunk reopened" in out and f"messages: {imu_n - 200}, cut_bytes: 0" in out, node.tail()
            g.prime()
            g.publish(cam_n=10, imu_hz_per_cam=10, image_bytes=1 << 16)  # ~50 reopened + ~100 new: one more chunk
            total = imu_n + g.settle("/s/imu")
            s = g.stream("/s/imu")
            g.wait(lambda: any(m.event == "sealed" and m.topic == "/s/imu" and m.index == 2 for m in g.manifests),
                   "the manifest of the chunk holding the reopened open chunk", 10)
            sealed = s.last_chunk_index + 1
            g.wait(lambda: g.stream("/s/imu").upload_backlog == 0
                   and all(json.loads((d / f"{i}.json").read_text()).get("storageRef") for i in range(sealed)),
                   lambda: f"every sealed chunk stored (last: {g.stream('/s/imu')})", 30)
            g.wait(lambda: any(m.event == "stored" and m.storage_ref.startswith("s3://") for m in g.manifests),
                   lambda: f"an s3 stored manifest (have {[(m.topic, m.event, m.index, m.storage_ref) for m in g.manifests]})", 10)
            open_at_stop = g.stream("/s/imu").open_messages
        finally:
            assert node.stop() == 0, node.output()[-3000:]
        # The clean stop sealed the open chunk and uploaded it too (stream.shutdown_upload_timeout),
        # instead of leaving it with storageRef null until the next start.
        assert "stream: every sealed chunk is uploaded" in node.output(), node.tail()
        sealed_at_stop = len(list(d.glob("[0-9]*.bin")))
        assert sealed_at_stop == sealed + (1 if open_at_stop else 0), (sealed, open_at_stop, sealed_at_stop)
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        for i in range(sealed_at_stop):
            env = json.loads((d / f"{i}.json").read_text())
            ref = env["storageRef"]
            assert ref.startswith("s3://peaq-chunks/robot1/"), ref
            key = ref.removeprefix("s3://peaq-chunks/")
            body = client.get_object(Bucket="peaq-chunks", Key=key)["Body"].read()
            assert body == (d / f"{i}.bin").read_bytes()
            refs = json.loads((d / f"{i}.refs.json").read_text())["refs"]
            assert refs[next(k for k in refs if k.startswith("0:"))] == ref and any(k.startswith("1:") for k in refs)
            # The Walrus destination, uploaded from the first run on (it was never down).
            wref = refs["2:walrus"]
            assert wref.startswith("walrus://") and walrus.blobs[wref.removeprefix("walrus://")] == body
    finally:
        moto.kill()
        moto.wait()
        walrus.close()

    # The chain verifies (SDK + CLI) and holds every logged package exactly once, in order.
    for t in ("/s/imu", "/s/cam"):
        _, _, v = sdk_chain(topic_dir(data, t))
        assert v.valid, (t, v)
        out = subprocess.run([stream_cli(), "verify", str(topic_dir(data, t))], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        assert plaintext_lines(topic_dir(data, t)) == logged(data, t)
    seqs = [json.loads(x)["sequenceNumber"] for x in plaintext_lines(d)]
    assert seqs == list(range(total))


def test_dropped_handovers_are_read_back_from_the_package_log(tmp_path, ros_node):
    """With a 1-byte hand-over budget every batch the tap sees is dropped: the stream thread
    still gets every package into the chain, from the package log, once and in order (the tap
    path: stream.write_once false, where the package log holds the packages)."""
    data = tmp_path / "data"
    node = NodeProcess(tmp_path, {"policy_file": str(policy(tmp_path)), "data_dir": str(data),
                                  "stream.queue_max_bytes": "1", "stream.write_once": "false"}).start()
    g = Graph(ros_node, node)
    try:
        node.wait_for_log("subscribed to /s/imu")
        g.wait_matched()
        g.publish(cam_n=10, imu_hz_per_cam=10, image_bytes=1 << 12)
        imu_n = g.settle("/s/imu")
        s = g.stream("/s/imu")
        assert s.handover_dropped == imu_n and s.last_sequence == imu_n - 1, brief(g.status())
    finally:
        assert node.stop() == 0, node.output()[-3000:]
    for t in ("/s/imu", "/s/cam"):
        assert plaintext_lines(topic_dir(data, t)) == logged(data, t)
    assert len(logged(data, "/s/imu")) == imu_n


def test_bad_stream_block_stops_the_node_naming_the_key(tmp_path):
    from peaqos_harness import run_node_expecting_failure
    p = tmp_path / "bad.yaml"
    p.write_text("""\
schema_version: 1
topics:
  - topic: /s/imu
    type: sensor_msgs/msg/Imu
    stream:
      chunk: {max_messages: 0}
""")
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(p), "data_dir": str(tmp_path / "d")})
    assert code != 0 and f"{p}: topics[0].stream.chunk.max_messages: must be at least 1" in out, out
    p.write_text(p.read_text().replace("chunk: {max_messages: 0}", 'recipients: {owner: "xyz"}'))
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(p), "data_dir": str(tmp_path / "d")})
    assert code != 0 and f"{p}: topics[0].stream.recipients.owner:" in out, out
    p.write_text(p.read_text().replace('recipients: {owner: "xyz"}', 'destinations: [{kind: s3, endpoint: "http://127.0.0.1:1", '
                                       'bucket: b, access_key_id: a, secret_access_key: "env:PEAQOS_TEST_UNSET_SECRET"}]'))
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(p), "data_dir": str(tmp_path / "d")})
    assert code != 0 and (f"{p}: topics[0].stream.destinations[0].secret_access_key: environment variable "
                          "PEAQOS_TEST_UNSET_SECRET is not set") in out, out
