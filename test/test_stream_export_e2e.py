"""End to end in a real ROS 2 graph: peaqos_node streams a sensor_msgs/msg/Image topic and a
sensor_msgs/msg/Imu topic into encrypted chunk chains (the camera's also to S3, a real
moto_server, and to a local Walrus publisher); `peaqos-stream export` turns them into one MCAP file, read back with the
independent Python `mcap` reader: every message equals the package payload the peaq SDK decrypts,
counts and time ranges match. Also: the export from S3 and from Walrus (no local ciphertext),
from a buyer grant (exactly the granted chunks), a tampered chunk that stops the export naming
it, and --ros2msg (CDR decoded by rclpy and by mcap_ros2)."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import rclpy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, Imu

from peaqos_harness import DEMO_DID, NodeProcess, free_port
from peaqos_node.srv import GrantAccess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_stream_e2e import (OWNER_PK_HEX, OWNER_SK_HEX, Graph, WalrusServer, plaintext_lines, start_moto,  # noqa: E402
                             stream_cli, topic_dir)

try:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
except ImportError as e:  # a test that cannot check fails, saying how to fix it
    raise ImportError(
        f"the export tests read MCAP files with the Python `mcap` and `mcap-ros2-support` packages ({e}): "
        "install them with `pip install mcap mcap-ros2-support` into the Python that runs the tests "
        "(scripts/setup --tests does)") from e

import boto3  # noqa: E402  (moto[server], installed by scripts/setup --tests)
from nacl.public import PrivateKey  # noqa: E402

CAM, IMU = "/s/cam", "/s/imu"
TYPES = {CAM: "sensor_msgs/msg/Image", IMU: "sensor_msgs/msg/Imu"}


def ns_of(iso: str) -> int:
    """ISO-8601 UTC (nanosecond precision, as the node writes it) → ns since the epoch."""
    from datetime import datetime, timezone
    base, _, frac = iso.removesuffix("Z").partition(".")
    sec = int(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return sec * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def read(path: Path):
    """topic → [(sequence, log_time, publish_time, message JSON)], schemas, metadata records."""
    msgs: dict[str, list] = {}
    schemas = {}
    with open(path, "rb") as f:
        r = make_reader(f)
        for schema, channel, m in r.iter_messages(log_time_order=False):
            schemas[channel.topic] = (schema.name, schema.encoding, channel.message_encoding, json.loads(schema.data))
            msgs.setdefault(channel.topic, []).append((m.sequence, m.log_time, m.publish_time, json.loads(m.data)))
        meta = [(x.name, dict(x.metadata)) for x in r.iter_metadata()]
        stats = r.get_summary().statistics
    return msgs, schemas, meta, stats


def export(args: list[str], out: Path) -> subprocess.CompletedProcess:
    argv = [stream_cli(), "export", "--json", "--out", str(out)]
    for t, ty in TYPES.items():
        argv += ["--ros-type", f"{t}={ty}"]
    return subprocess.run(argv + args, capture_output=True, text=True, timeout=300)


def packages(d: Path) -> list[dict]:
    """The packages of a chain as the peaq SDK decrypts them (owner key)."""
    return [json.loads(x) for x in plaintext_lines(d)]


def test_node_stream_exports_to_mcap_read_back_independently(tmp_path, ros_node):
    port = free_port()
    moto = start_moto(port)
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket="peaq-chunks")
    walrus = WalrusServer()
    pol = tmp_path / "policy.yaml"
    pol.write_text(f"""\
schema_version: 1
topics:
  - topic: {CAM}
    type: {TYPES[CAM]}
    qos: {{reliability: reliable, durability: volatile, depth: 50}}
    stream:
      chunk: {{max_bytes: 300000, max_age: 1}}
      recipients: {{owner: "{OWNER_PK_HEX}"}}
      destinations: [{{kind: s3, endpoint: "http://127.0.0.1:{port}", bucket: peaq-chunks, prefix: robot1,
                       access_key_id: testing, secret_access_key: testing, timeout_secs: 5}},
                     {{kind: walrus, publisher_url: "{walrus.url}", aggregator_url: "{walrus.url}", epochs: 3}}]
  - topic: {IMU}
    type: {TYPES[IMU]}
    qos: {{reliability: reliable, durability: volatile, depth: 1000}}
    stream:
      chunk: {{max_messages: 40, max_age: 1}}
      recipients: {{owner: "{OWNER_PK_HEX}"}}
""")
    data = tmp_path / "data"
    node = NodeProcess(tmp_path, {"policy_file": str(pol), "data_dir": str(data)}).start()
    g = Graph(ros_node, node)
    buyer = PrivateKey.generate()
    try:
        node.wait_for_log(f"subscribed to {IMU}")
        g.wait_matched()
        clock = ros_node.get_clock()
        img = Image(height=64, width=1024, encoding="mono8", step=1024)
        img.data = bytes((i * 7) & 0xFF for i in range(256)) * 256  # 64 KiB
        for i in range(20):
            img.header.frame_id = f"cam-{i}"
            img.header.stamp = clock.now().to_msg()
            g.cam.publish(img)
            for k in range(10):
                m = Imu()
                m.header.frame_id = "imu"
                m.header.stamp = clock.now().to_msg()
                m.linear_acceleration.x = float(i * 10 + k)
                m.orientation.w = 1.0
                g.imu.publish(m)
                rclpy.spin_once(ros_node, timeout_sec=0.005)
        cam_n, imu_n = g.settle(CAM), g.settle(IMU)
        assert cam_n >= 18 and imu_n >= 180, (cam_n, imu_n)

        def done():
            s = {x.topic: x for x in g.status().streams}
            return all(s[t].open_messages == 0 and s[t].upload_backlog == 0 for t in (CAM, IMU))
        g.wait(done, "every chunk sealed and stored")
        assert g.stream(IMU).last_chunk_index >= 3 and g.stream(CAM).last_chunk_index >= 3
        r = g.call(GrantAccess, "/peaqos_node/grant_access",
                   GrantAccess.Request(topic=IMU, buyer_public_key_hex=bytes(buyer.public_key).hex(),
                                       first_index=1, last_index=2))
        assert r.success, r.message
        grant_files = list(r.files)
    finally:
        assert node.stop() == 0, node.output()[-3000:]

    owner_key = tmp_path / "owner.x25519"
    owner_key.write_text(OWNER_SK_HEX + "\n")
    cam_dir, imu_dir = topic_dir(data, CAM), topic_dir(data, IMU)
    expected = {CAM: packages(cam_dir), IMU: packages(imu_dir)}
    assert len(expected[CAM]) == cam_n and len(expected[IMU]) == imu_n

    # 1. The whole data_dir, with the owner's key.
    out = tmp_path / "all.mcap"
    p = export(["--secret-key-file", str(owner_key), str(data)], out)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["messages"] == cam_n + imu_n and summary["unverified"] == []
    msgs, schemas, meta, stats = read(out)
    assert set(msgs) == {CAM, IMU}
    assert stats.message_count == cam_n + imu_n
    for t in (CAM, IMU):
        got, exp = msgs[t], expected[t]
        assert len(got) == len(exp), t
        for (seq, log_time, publish_time, m), pkg in zip(got, exp):
            assert m == pkg["payload"], f"{t} {seq}: the message is the package payload"
            assert seq == pkg["sequenceNumber"]
            assert log_time == ns_of(pkg["timestamp"])
            stamp = pkg["payload"]["header"]["stamp"]
            assert publish_time == stamp["sec"] * 1_000_000_000 + stamp["nanosec"] == log_time
        assert (min(x[1] for x in got), max(x[1] for x in got)) == \
            (min(ns_of(p["timestamp"]) for p in exp), max(ns_of(p["timestamp"]) for p in exp))
        name, enc, menc, schema = schemas[t]
        assert (name, enc, menc) == (TYPES[t], "jsonschema", "json")
        assert schema["type"] == "object" and "header" in schema["properties"]
        topic_meta = next(m for n, m in meta if n == "peaqos.topic" and m["topic"] == t)
        d = topic_dir(data, t)
        last = max(int(f.stem) for f in d.glob("[0-9]*.bin"))
        assert topic_meta["firstChunkId"] == json.loads((d / "0.json").read_text())["chunkId"]
        assert topic_meta["lastChunkId"] == json.loads((d / f"{last}.json").read_text())["chunkId"]
        ver = next(m for n, m in meta if n == "peaqos.verification" and m["topic"] == t)
        assert len(ver) == last + 2 and not any("FAILED" in v for v in ver.values()), ver
    assert msgs[CAM][0][3]["encoding"] == "mono8" and msgs[CAM][0][3]["height"] == 64
    export_meta = next(m for n, m in meta if n == "peaqos.export")
    assert export_meta["machineDid"] == DEMO_DID and export_meta["verified"] == "true"
    assert export_meta["key"] == "owner key entry"

    # 2. The camera from S3 only: its ciphertexts are moved away, read through the storage refs.
    local_bins = tmp_path / "bins"
    local_bins.mkdir()
    for b in cam_dir.glob("[0-9]*.bin"):
        shutil.move(str(b), local_bins / b.name)
    storage = tmp_path / "s3.json"
    storage.write_text(json.dumps({"kind": "s3", "endpoint": f"http://127.0.0.1:{port}", "bucket": "peaq-chunks",
                                   "prefix": "robot1", "access_key_id": "testing", "secret_access_key": "testing"}))
    out_s3 = tmp_path / "s3.mcap"
    p = export(["--secret-key-file", str(owner_key), "--storage", str(storage), str(cam_dir)], out_s3)
    moto.kill()
    moto.wait()
    assert p.returncode == 0, p.stderr
    s3_msgs, *_ = read(out_s3)
    assert [m[3] for m in s3_msgs[CAM]] == [pkg["payload"] for pkg in expected[CAM]]
    # The same from Walrus (the second destination: its references are in <n>.refs.json).
    wal_cfg = tmp_path / "walrus.json"
    wal_cfg.write_text(json.dumps({"kind": "walrus", "publisher_url": walrus.url, "aggregator_url": walrus.url}))
    out_w = tmp_path / "walrus.mcap"
    p = export(["--secret-key-file", str(owner_key), "--storage", str(wal_cfg), str(cam_dir)], out_w)
    walrus.close()
    assert p.returncode == 0, p.stderr
    w_msgs, *_ = read(out_w)
    assert [m[3] for m in w_msgs[CAM]] == [pkg["payload"] for pkg in expected[CAM]]
    # Without S3 and without local ciphertexts there is nothing to verify: named, no file.
    out_none = tmp_path / "none.mcap"
    p = export(["--secret-key-file", str(owner_key), str(cam_dir)], out_none)
    assert p.returncode == 1 and "chunk 0 (0x" in p.stderr and "ciphertext" in p.stderr, p.stderr
    assert not out_none.exists()
    for b in local_bins.iterdir():
        shutil.move(str(b), cam_dir / b.name)

    # 3. A buyer's grant for IMU chunks 1..2: exactly their messages.
    buyer_key = tmp_path / "buyer.x25519"
    buyer_key.write_text(bytes(buyer).hex())
    out_g = tmp_path / "grant.mcap"
    args = ["--secret-key-file", str(buyer_key)]
    for f in grant_files:
        args += ["--grant", f]
    p = export(args + [str(data)], out_g)
    assert p.returncode == 0, p.stderr
    g_msgs, _, g_meta, _ = read(out_g)
    granted = []
    for i in (1, 2):
        env = json.loads((imu_dir / f"{i}.json").read_text())
        granted.append(env["chunkId"])
    first_seq = sum(json.loads((imu_dir / f"{i}.meta.json").read_text())["messages"] for i in (0,))
    n_granted = sum(json.loads((imu_dir / f"{i}.meta.json").read_text())["messages"] for i in (1, 2))
    assert set(g_msgs) == {IMU}
    assert [m[0] for m in g_msgs[IMU]] == list(range(first_seq, first_seq + n_granted))
    assert [m[3] for m in g_msgs[IMU]] == [p["payload"] for p in expected[IMU][first_seq:first_seq + n_granted]]
    tm = next(m for n, m in g_meta if n == "peaqos.topic")
    assert (tm["firstChunkId"], tm["lastChunkId"]) == tuple(granted)

    # 4. A tampered chunk stops the export, naming it; nothing is written.
    bad = tmp_path / "bad"
    shutil.copytree(imu_dir, bad / imu_dir.name)
    victim = bad / imu_dir.name / "2.bin"
    b = bytearray(victim.read_bytes())
    b[len(b) // 2] ^= 0x01
    victim.write_bytes(bytes(b))
    out_bad = tmp_path / "bad.mcap"
    p = export(["--secret-key-file", str(owner_key), str(bad / imu_dir.name)], out_bad)
    chunk_id = json.loads((imu_dir / "2.json").read_text())["chunkId"]
    assert p.returncode == 1, p.stderr
    assert f"chunk 2 ({chunk_id}): ciphertext hash failed" in p.stderr, p.stderr
    assert not out_bad.exists() and not Path(str(out_bad) + ".tmp").exists()
    # --allow-unverified exports the rest and lists the chunk.
    p = export(["--secret-key-file", str(owner_key), "--allow-unverified", str(bad / imu_dir.name)], out_bad)
    assert p.returncode == 0, p.stderr
    _, _, b_meta, _ = read(out_bad)
    unv = next(m for n, m in b_meta if n == "peaqos.unverified")
    assert any("chunk 2" in v and "ciphertext hash failed" in v for v in unv.values()), unv

    # 5. --ros2msg: the ros2msg schema and CDR messages, decoded by ROS 2's own deserializer
    # (rclpy) and by the independent mcap_ros2 decoder; every field equals the payload.
    out_cdr = tmp_path / "cdr.mcap"
    p = export(["--secret-key-file", str(owner_key), "--ros2msg", str(data)], out_cdr)
    assert p.returncode == 0, p.stderr
    by_seq = {t: {pkg["sequenceNumber"]: pkg["payload"] for pkg in expected[t]} for t in (CAM, IMU)}

    def check(topic, msg, pl):
        assert msg.header.frame_id == pl["header"]["frame_id"]
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (pl["header"]["stamp"]["sec"], pl["header"]["stamp"]["nanosec"])
        if topic == CAM:
            assert (msg.height, msg.width, msg.encoding, msg.step) == (pl["height"], pl["width"], pl["encoding"], pl["step"])
            assert bytes(msg.data) == base64.b64decode(pl["data"]) and len(msg.data) == 64 * 1024
        else:
            a = msg.linear_acceleration
            assert (a.x, a.y, a.z) == tuple(float(pl["linear_acceleration"][k]) for k in "xyz")
            assert msg.orientation.w == 1.0 and list(msg.orientation_covariance) == [float(x) for x in pl["orientation_covariance"]]

    seen = {CAM: 0, IMU: 0}
    with open(out_cdr, "rb") as f:
        for schema, channel, m in make_reader(f).iter_messages():
            assert (schema.name, schema.encoding, channel.message_encoding) == (TYPES[channel.topic], "ros2msg", "cdr")
            check(channel.topic, deserialize_message(m.data, Image if channel.topic == CAM else Imu),
                  by_seq[channel.topic][m.sequence])
            seen[channel.topic] += 1
    assert seen == {CAM: cam_n, IMU: imu_n}
    decoded_n = 0
    with open(out_cdr, "rb") as f:
        for _, channel, m, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            check(channel.topic, decoded, by_seq[channel.topic][m.sequence])
            decoded_n += 1
    assert decoded_n == cam_n + imu_n
