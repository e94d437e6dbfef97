"""Retention in a real ROS graph: a run that writes many times the retention bounds keeps the
package log and the local chunk ciphertexts under them, while nothing a consumer had not
durably consumed is deleted:

* /rt/cam is streamed into encrypted chunks, copied to a second directory (a `local`
  destination with `dir:`, standing in for S3/Walrus): its package log goes only behind the
  chunk stream's sealed position, its local ciphertexts only once stored at the destination.
  Every acknowledged package is in the chunk chain, which the peaq SDK verifies and decrypts
  (ciphertexts from the chain directory or, once pruned there, from their storageRef).
* /rt/beat has an event rule (windows of 10 messages, chain client disabled: events stay
  pending): its log goes only behind the rule's checkpoint; every window of the run became an
  event, none was cut short. Its messages are larger than the events hand-over bound
  (events.queue_max_bytes 64 KiB), so every hand-over is dropped, counted, and read back from
  the package log by the rules.
* The node is killed (-9: the open chunk, held in memory only, is lost) and restarts on the
  pruned state: the stream replays the open chunk's packages from the log (retention kept them)
  and both consumers continue without a gap.
The retention parameters are declared (`ros2 param list` sees them) and the deletions are
counted on ~/status."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from peaqos_harness import NodeProcess, call_service, run_node_expecting_failure, wait_until

from rcl_interfaces.srv import ListParameters  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from peaqos_node.msg import DataPackage  # noqa: E402
from peaqos_node.srv import GetStatus  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "stream"))
from sdk_oracle import _chunk_from_camel  # noqa: E402

from nacl.public import PrivateKey  # noqa: E402
from peaq_os_sdk.stream.chunking import decrypt_chunk, verify_chunk_chain  # noqa: E402
from peaq_os_sdk.stream.types.chunk import ChunkChain  # noqa: E402

OWNER_SK = PrivateKey(bytes(range(7, 39)))
CAM, BEAT = "/rt/cam", "/rt/beat"
LOG_MAX = 1 << 20          # retention.log_max_bytes
SEGMENT = 128 << 10        # retention.log_segment_max_bytes
CHUNKS_MAX = 512 << 10     # retention.chunks_max_bytes
# What may be on disk above a bound: data that arrived since the last pass (retention runs every
# 0.5 s; about 1 MB/s per topic here) plus what a consumer has not durably consumed yet (one
# chunk, one event window) and the segment being written.
SLACK = 1536 << 10
MSG = 20_000
BEAT_MSG = 70_000  # above events.queue_max_bytes: every hand-over to the rules is dropped
RETENTION_PARAMS = {
    "retention.log_max_bytes", "retention.log_max_age", "retention.log_segment_max_bytes",
    "retention.chunks_max_bytes", "retention.chunks_max_age", "retention.grants_max_age",
    "retention.events_max_age", "retention.interval", "retention.log_total_max_bytes", "retention.chunks_local_only",
}


def policy(remote: Path) -> str:
    return f"""\
schema_version: 1
topics:
  - topic: {CAM}
    type: std_msgs/msg/String
    qos: reliable
    queue_size: 500
    stream:
      chunk: {{max_bytes: 131072, max_age: 1}}
      recipients: {{owner: "{bytes(OWNER_SK.public_key).hex()}"}}
      destinations: [{{kind: local, dir: "{remote}"}}]
    events:
      - {{name: frames, event_type: activity, value: count, window: {{messages: 10}}}}
  - topic: {BEAT}
    type: std_msgs/msg/String
    qos: reliable
    queue_size: 500
    events:
      - {{name: beats, event_type: activity, value: count, window: {{messages: 10}}}}
"""


def tdir(root: Path, topic: str) -> Path:
    return root / topic.strip("/").replace("/", ".")


def files_bytes(d: Path, pattern: str) -> int:
    return sum(f.stat().st_size for f in d.glob(pattern) if f.is_file()) if d.exists() else 0


def log_seqs(data: Path, topic: str) -> list[int]:
    out = []
    for f in sorted(tdir(data / "packages", topic).glob("seg-*.jsonl")):
        b = f.read_bytes()
        assert not b or b.endswith(b"\n"), f"{f}: torn line"
        out += [json.loads(line)["sequenceNumber"] for line in b.splitlines()]
    return out


def chain_sequences(data: Path) -> tuple[list[int], int]:
    """Verify the whole chunk chain with the SDK and decrypt it with the owner key: every
    package sequence in it, and how many ciphertexts came from the destination (pruned here)."""
    d = tdir(data / "stream", CAM)
    idx = sorted(int(n.name[:-5]) for n in d.glob("*.json") if n.name[:-5].isdigit())
    chunks, blobs, remote = [], {}, 0
    for i in idx:
        env = json.loads((d / f"{i}.json").read_text())
        c = _chunk_from_camel(env)
        chunks.append(c)
        local = d / f"{i}.bin"
        if local.exists():
            blobs[i] = local.read_bytes()
        else:
            ref = env.get("storageRef") or ""
            assert ref.startswith("file://"), f"chunk {i}: pruned locally but not stored ({ref!r})"
            blobs[i] = Path(ref[len("file://"):]).read_bytes()
            remote += 1
    v = verify_chunk_chain(ChunkChain(source_hash="", chunks=tuple(chunks), did=chunks[0].signature.machine_did,
                                      chunk_size=0), blobs)
    assert v.valid, v
    seqs = []
    for c in chunks:
        owner = next(r for r in c.encryption.key_recipients if r.recipient_type == "owner")
        pt = decrypt_chunk(chunk=c, recipient_private_key_hex=bytes(OWNER_SK).hex(), recipient_entry=owner,
                           encrypted_data=blobs[c.index])
        seqs += [json.loads(line)["sequenceNumber"] for line in pt.decode().splitlines()]
    return seqs, remote


def event_windows(data: Path, rule: str = "beats") -> list[tuple[int, int]]:
    out = []
    for f in (data / "events" / "pending").glob("*.json"):
        e = json.loads(f.read_text())["event"]
        if e["rule"] == rule:
            out.append((e["first_seq"], e["last_seq"]))
    return sorted(out)


class Robot:
    def __init__(self, n):
        self.n = n
        q = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {t: n.create_publisher(String, t, q) for t in (CAM, BEAT)}
        self.acked: dict[str, set[int]] = {CAM: set(), BEAT: set()}
        n.create_subscription(DataPackage, "/peaqos_node/data_packages",
                              lambda m: self.acked[m.topic].add(m.sequence_number), q)
        self.cli = n.create_client(GetStatus, "/peaqos_node/status")
        self.i = 0

    def status(self, node):
        return call_service(self.n, self.cli, GetStatus.Request(), proc=node)

    def wait_matched(self, node):
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values()), 20,
                   "the node to subscribe", nodes=node, spin=self.n)

    def run(self, seconds: float, hz: float, sample) -> None:
        t0 = time.monotonic()
        while time.monotonic() < t0 + seconds:
            target = t0 + self.i / hz
            while time.monotonic() < target:
                import rclpy
                rclpy.spin_once(self.n, timeout_sec=0.005)
            self.pubs[CAM].publish(String(data=f"{self.i:08d}" + "x" * MSG))
            if self.i % 5 == 0:  # /rt/beat at a fifth of the rate, larger messages
                self.pubs[BEAT].publish(String(data=f"{self.i:08d}" + "x" * BEAT_MSG))
            self.i += 1
            if self.i % 10 == 0:
                sample()

    def settle(self, node, topic_counts) -> None:
        def done():
            st = self.status(node)
            return all(t.received == t.packaged + t.dropped + t.errors for t in st.topics) and \
                all(len(self.acked[t.topic]) >= t.packaged - topic_counts.get(t.topic, 0) for t in st.topics)
        wait_until(done, 60, "every accepted message packaged and published", nodes=node, spin=self.n)


def test_disk_use_stays_under_the_bounds_and_nothing_unconsumed_is_deleted(tmp_path, ros_node):
    data, remote = tmp_path / "data", tmp_path / "remote"
    (tmp_path / "policy.yaml").write_text(policy(remote))
    params = {
        "policy_file": str(tmp_path / "policy.yaml"), "data_dir": str(data), "chain.enabled": "false",
        "retention.log_max_bytes": str(LOG_MAX), "retention.log_segment_max_bytes": str(SEGMENT),
        "retention.chunks_max_bytes": str(CHUNKS_MAX), "retention.interval": "0.5",
        "events.queue_max_bytes": "65536",
    }
    node = NodeProcess(tmp_path, params).start()
    robot = Robot(ros_node)
    peaks = {"cam log": 0, "beat log": 0, "cam chunks": 0}

    def sample():
        peaks["cam log"] = max(peaks["cam log"], files_bytes(tdir(data / "packages", CAM), "seg-*.jsonl"))
        peaks["beat log"] = max(peaks["beat log"], files_bytes(tdir(data / "packages", BEAT), "seg-*.jsonl"))
        peaks["cam chunks"] = max(peaks["cam chunks"], files_bytes(tdir(data / "stream", CAM), "*.bin"))

    try:
        node.wait_for_log(f"subscribed to {BEAT}")
        robot.wait_matched(node)
        # The retention parameters are declared: `ros2 param list` sees them.
        lp = ros_node.create_client(ListParameters, "/peaqos_node/list_parameters")
        names = set(call_service(ros_node, lp, ListParameters.Request(prefixes=["retention"], depth=0)).result.names)
        assert RETENTION_PARAMS <= names, names

        # ~1 MB/s per topic for 25 s: ~25 MB each, many times the 1 MiB log bound.
        robot.run(25, 50, sample)
        robot.settle(node, {})
        st = robot.status(node)
        cam, beat = (next(t for t in st.topics if t.topic == x) for x in (CAM, BEAT))
        written = cam.packaged * MSG
        assert written > 10 * LOG_MAX and beat.packaged * BEAT_MSG > 10 * LOG_MAX, (cam, beat)
        # The streamed topic is written once (its log holds small references to the chunks): its
        # log stays far under the bound; the rules' topic's log is pruned.
        assert beat.log_segments_removed > 0, (cam, beat)
        assert st.streams[0].chunks_pruned > 0, st.streams[0]
        assert st.events_handover_dropped >= beat.packaged and st.events_handover_dropped_bytes > 0, st
        print(f"\npeak disk use: {peaks}; cam packaged {cam.packaged} ({written >> 20} MiB), "
              f"log segments removed cam {cam.log_segments_removed} beat {beat.log_segments_removed}, "
              f"chunks pruned {st.streams[0].chunks_pruned}")
        assert peaks["cam log"] <= LOG_MAX + SLACK, peaks
        assert peaks["beat log"] <= LOG_MAX + SLACK, peaks
        assert peaks["cam chunks"] <= CHUNKS_MAX + SLACK, peaks
        # Let the rules catch up with the log (every hand-over was dropped), then kill -9: the
        # open chunk stays on disk (ciphertext and its key file), the rules' open window is lost.
        last_beat = beat.last_sequence
        wait_until(lambda: len(event_windows(data)) == (last_beat + 1) // 10, 30, "the rules to catch up",
                   nodes=node, spin=ros_node)
        node.kill9()
        sample()

        # Nothing a consumer had not durably consumed was deleted: the sealed chain is a gap-free
        # prefix, and the package log still holds everything after it.
        seqs, from_remote = chain_sequences(data)
        assert from_remote > 0
        assert seqs == list(range(len(seqs))), "the chunk chain has a gap or a duplicate"
        log_cam = log_seqs(data, CAM)
        assert 0 <= log_cam[0] <= seqs[-1] + 1, (log_cam[0], seqs[-1])
        open_chunk = list(tdir(data / "stream", CAM).glob("*.key.json"))
        # (the status was read before the kill: a message still in flight then may be packaged after it)
        assert log_cam == list(range(log_cam[0], log_cam[-1] + 1)) and log_cam[-1] >= cam.last_sequence
        assert robot.acked[CAM] <= set(seqs) | set(log_cam), "an acknowledged package is in neither"
        # The rules on the streamed topic read its packages back from the chunks (the log holds
        # references): every window whole, none lost with the ciphertexts retention deleted.
        frames = event_windows(data, "frames")
        assert frames and frames == [(10 * k, 10 * k + 9) for k in range(len(frames))], frames
        windows = event_windows(data)
        log_beat = log_seqs(data, BEAT)
        assert log_beat[0] > 0 and log_beat == list(range(log_beat[0], log_beat[-1] + 1))
        assert windows == [(10 * k, 10 * k + 9) for k in range(len(windows))], "an event window was cut short"
        assert len(windows) == (log_beat[-1] + 1) // 10, (len(windows), log_beat[-1])
        assert robot.acked[BEAT] <= set(range(log_beat[-1] + 1))
        assert windows[-1][1] >= log_beat[0] - 1, "the log lost packages of the rules' open window"

        # Restart on the pruned state: both consumers continue without a gap.
        node = NodeProcess(tmp_path, params, name="node2").start()
        node.wait_for_log(f"subscribed to {BEAT}")
        robot.wait_matched(node)
        robot.run(4, 50, sample)
        robot.settle(node, {CAM: len(robot.acked[CAM]), BEAT: len(robot.acked[BEAT])})
        # The open chunk the kill left is reopened (cut to what the log acknowledged), not replayed.
        assert not open_chunk or "open chunk reopened" in node.output(), node.tail()
        assert node.stop() == 0
        seqs2, _ = chain_sequences(data)
        assert seqs2 == list(range(len(seqs2))) and len(seqs2) > len(seqs)
        assert robot.acked[CAM] <= set(seqs2)
        windows = event_windows(data)
        assert windows == [(10 * k, 10 * k + 9) for k in range(len(windows))]
        assert len(windows) == (log_seqs(data, BEAT)[-1] + 1) // 10
        # The open window at the kill is rebuilt from references into the chain: no gap.
        frames2 = event_windows(data, "frames")
        assert frames2 == [(10 * k, 10 * k + 9) for k in range(len(frames2))] and len(frames2) >= len(frames)
        assert len(frames2) == (max(seqs2) + 1) // 10, (len(frames2), max(seqs2))
    finally:
        if node.proc and node.proc.poll() is None:
            node.stop()


def test_a_bad_retention_parameter_stops_the_node_naming_it(tmp_path):
    for name, value, want in [("retention.chunks_local_only", "sometimes", "must be keep or delete_oldest"),
                              ("retention.log_segment_max_bytes", "1024", "at least 65536"),
                              ("retention.interval", "0.0", "above 0")]:
        code, out = run_node_expecting_failure(tmp_path, {"data_dir": str(tmp_path / "d"), "chain.enabled": "false",
                                                          name: value})
        assert code != 0 and name in out and want in out, (name, out[-2000:])
