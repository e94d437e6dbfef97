#!/usr/bin/env python3
"""Randomized crash-and-fault campaign with an independent audit.

Drives peaqos_node with a mixed load (a fare topic whose event rule makes one revenue event per
message, a 50 Hz IMU topic streamed in chunks to an S3 server, a battery topic, and
`~/submit_event` calls), and at seeded random moments kills the node with SIGKILL, stops and
restarts the chain (anvil, keeping its state) or the S3 server; then restarts what it stopped and
goes on, for N cycles. At the end everything comes back and drains, and an auditor that trusts
only the SDK, the chain and S3 checks:

- every package the node published verifies with the SDK, and each topic's package log has
  gap-free sequence numbers and holds every published package (nothing acknowledged is lost);
- the chunk chain verifies with the SDK from its first chunk, and every logged IMU package is in
  exactly one chunk or the open chunk (none lost, none doubled);
- every `~/submit_event` the node acknowledged is on chain exactly once, and the fare rule made
  exactly one event per logged fare package (no event lost, none doubled);
- the signer's nonces were each used once (no transaction was sent twice);
- every sealed chunk is in S3 once, byte-identical to the local ciphertext.

Usage: . scripts/env.sh && python3 scripts/campaign.py [--cycles N] [--seed S] [--short]
(--short: 4 cycles, what CI runs through test/test_campaign.py). Prints one JSON report line
and exits 1 when anything was lost or doubled.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "test"), str(ROOT / "test" / "chain"), str(ROOT / "test" / "stream")]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import BatteryState, Imu  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402

import harness  # noqa: E402
from peaqos_harness import NodeProcess, free_port, poll_until, sdk_verify, wait_until  # noqa: E402
from peaqos_node.msg import DataPackage  # noqa: E402
from peaqos_node.srv import GetStatus, SubmitEvent  # noqa: E402
from test_chain_services_e2e import Caller, activate_gen2, event_registry  # noqa: E402
from test_stream_e2e import OWNER_PK_HEX, logged, sdk_chain, start_moto, topic_dir  # noqa: E402

TOPICS = ("/camp/fare", "/camp/imu", "/camp/battery")
BUCKET, PREFIX = "camp", "robot"
SUBMIT_BASE = 7_000_000  # activity values of ~/submit_event calls: unique, told apart from rule events


def policy(port: int) -> str:
    return f"""\
schema_version: 1
topics:
  - topic: /camp/fare
    type: std_msgs/msg/Float64
    qos: {{reliability: reliable, durability: volatile, depth: 100}}
    events:
      - {{name: fare, event_type: revenue, value: {{field: data}}, scale: 100, rounding: half_even, currency: EUR}}
  - topic: /camp/imu
    type: sensor_msgs/msg/Imu
    qos: {{reliability: reliable, durability: volatile, depth: 1000}}
    stream:
      chunk: {{max_messages: 20, max_age: 1}}
      recipients: {{owner: "{OWNER_PK_HEX}"}}
      destinations: [{{kind: s3, endpoint: "http://127.0.0.1:{port}", bucket: {BUCKET}, prefix: {PREFIX},
                      access_key_id: testing, secret_access_key: "env:CAMP_S3_SECRET", timeout_secs: 2}}]
  - topic: /camp/battery
    type: sensor_msgs/msg/BatteryState
    qos: {{reliability: reliable, durability: volatile, depth: 100}}
"""


class Campaign:
    def __init__(self, args, work: Path):
        self.rng = random.Random(args.seed)
        self.args, self.work = args, work
        self.data = work / "data"
        self.port = free_port()
        (work / "policy.yaml").write_text(policy(self.port))
        self.params = {"policy_file": str(work / "policy.yaml"), "data_dir": str(self.data),
                       "chain.receipt_timeout": "5.0", "events.max_age": "0.5", "chain.poll_interval": "0.1"}
        self.faults = {"kill9": 0, "chain_down": 0, "s3_down": 0}
        self.published: list[DataPackage] = []
        self.acked_submits: dict[int, str] = {}  # value -> intent id
        self.sent = 0
        self.runs = 0

    # -- the parts ------------------------------------------------------------------------
    def start_node(self) -> NodeProcess:
        self.runs += 1
        # Debug level with RUST_LOG narrowing it to the request lines: call_service resends only a
        # request the node never logged, so no ~/submit_event is sent twice by this client.
        n = NodeProcess(self.work, self.params, env={"CAMP_S3_SECRET": "testing"}, name=f"run{self.runs}")
        self.node = n
        n.start()
        n.wait_for_log("subscribed to /camp/battery", timeout=60)
        return n

    def publishers(self, ros):
        q = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {"/camp/fare": ros.create_publisher(Float64, "/camp/fare", q),
                     "/camp/imu": ros.create_publisher(Imu, "/camp/imu", q),
                     "/camp/battery": ros.create_publisher(BatteryState, "/camp/battery", q)}
        ros.create_subscription(DataPackage, "/peaqos_node/data_packages", self.published.append,
                                QoSProfile(depth=10000, reliability=ReliabilityPolicy.RELIABLE))

    def publish_for(self, ros, seconds: float, node: NodeProcess, caller: Caller, mid: int, kill_at: float | None):
        """Fare 10 Hz, IMU 50 Hz, battery 10 Hz; a few ~/submit_event calls; SIGKILL at kill_at."""
        start = time.monotonic()
        tick = 0
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values()), 30,
                   "the node to subscribe", nodes=node, spin=ros)
        while time.monotonic() - start < seconds:
            if kill_at is not None and time.monotonic() - start >= kill_at:
                node.kill9()
                self.faults["kill9"] += 1
                return False
            m = Imu()
            m.header.stamp.sec, m.linear_acceleration.x = int(time.time()), float(tick)
            self.pubs["/camp/imu"].publish(m)
            if tick % 5 == 0:
                self.pubs["/camp/fare"].publish(Float64(data=1.0 + (tick % 97) / 100))
                b = BatteryState()
                b.voltage = 24.0
                self.pubs["/camp/battery"].publish(b)
                self.sent += 2
            if tick % 40 == 7 and self.rng.random() < 0.5:
                value = SUBMIT_BASE + len(self.acked_submits) + 1
                try:
                    # Never resent: ~/submit_event has no idempotency key (as in the SDK), so a
                    # client that resends a request the node did get submits it twice (the first
                    # long run of this campaign did exactly that, 4 times in 32).
                    r = self.submitter.call(SubmitEvent, "submit_event", timeout=20, machine_id=str(mid), event_type=1,
                                            value=str(value), timestamp=self.last_ts, no_wait=True)
                    if r.success:
                        self.acked_submits[value] = r.intent_id
                except AssertionError:
                    pass  # not answered: not acknowledged, so not counted
            self.sent += 1
            tick += 1
            rclpy.spin_once(ros, timeout_sec=0.0)
            time.sleep(0.02)
        return True

    # -- the campaign ---------------------------------------------------------------------
    def run(self) -> dict:
        rclpy.init()
        ros = rclpy.create_node("peaqos_campaign")
        self.publishers(ros)
        self.moto = start_moto(self.port)
        self.node: NodeProcess | None = None
        try:
            return self._run(ros, self.moto)
        finally:
            if self.node is not None and self.node.proc and self.node.proc.poll() is None:
                self.node.kill9()
            self.moto.kill()
            ros.destroy_node()
            rclpy.shutdown()

    def _run(self, ros, moto) -> dict:
        self.s3().create_bucket(Bucket=BUCKET)
        with harness.TestChain() as chain:
            self.chain = chain
            self.params["chain.rpc_urls"] = f"['{chain.rpc_url}']"
            node = self.start_node()
            caller = Caller(ros, proc=node)
            self.submitter = Caller(ros, proc=None)
            r = activate_gen2(caller)
            assert r.success, (r.error_code, r.message)
            mid = int(r.machine_id)
            for cycle in range(self.args.cycles):
                # ~/submit_event timestamps may not be ahead of the chain's latest block.
                self.last_ts = chain.latest_timestamp() - 1
                seconds = self.rng.uniform(1.0, 2.5 if self.args.short else 5.0)
                fault = self.rng.choices(["kill9", "chain_down", "s3_down", "none"], [4, 2, 2, 1])[0]
                kill_at = self.rng.uniform(0.2, seconds) if fault == "kill9" else None
                if fault == "chain_down":
                    chain.stop()
                    self.faults["chain_down"] += 1
                if fault == "s3_down":
                    # Frozen, not killed: moto keeps its objects only in memory.
                    os.kill(moto.pid, signal.SIGSTOP)
                    self.faults["s3_down"] += 1
                caller.proc = node
                alive = self.publish_for(ros, seconds, node, caller, mid, kill_at)
                if fault == "chain_down":
                    chain.restart()
                if fault == "s3_down":
                    os.kill(moto.pid, signal.SIGCONT)
                if alive and self.rng.random() < 0.5:
                    node.stop()
                    alive = False
                if not alive:
                    node = self.start_node()
            # Everything up: drain, then audit.
            caller.proc = node
            self.drain(ros, caller, chain, mid, node)
            node.stop()
            return self.audit(chain, mid)

    def drain(self, ros, caller: Caller, chain, mid: int, node: NodeProcess):
        reg = event_registry(chain)
        want_submits = set(self.acked_submits)

        def drained() -> bool:
            # The durable state, not the status counters: no event waits in events/pending, no
            # intent is left in chain/intents (finished ones move to chain/done), no upload waits.
            st = caller.call(GetStatus, "status", timeout=20)
            streams_done = all(s.upload_backlog == 0 for s in st.streams)
            events_done = not any((self.data / "events" / "pending").glob("*.json"))
            outbox_done = not any((self.data / "chain" / "intents").glob("*.json"))
            on_chain = {reg.functions.getEventAt(mid, i).call()[2] for i in range(reg.functions.getEventCount(mid).call())}
            return streams_done and events_done and outbox_done and want_submits <= on_chain
        wait_until(drained, 180, "every acknowledged event on chain and every chunk uploaded", nodes=node, spin=ros,
                   poll=1.0)
        st = caller.call(GetStatus, "status", timeout=20)
        self.final_rules = {r.rule: (r.produced, r.submitted, r.included, r.failed, r.pending) for r in st.event_rules}
        count = lambda: reg.functions.getEventCount(mid).call()  # noqa: E731
        last = count()
        poll_until(lambda: False, 4.0, spin=ros)  # anything sent twice would land by now
        assert count() >= last

    def s3(self):
        import boto3
        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    # -- the auditor ----------------------------------------------------------------------
    def audit(self, chain, mid: int) -> dict:
        lost = doubled = 0
        problems: list[str] = []
        logged_lines = {t: logged(self.data, t) for t in TOPICS}
        logged_set = {t: set(v) for t, v in logged_lines.items()}
        # 1. Packages: SDK-valid, gap-free per topic, every published one on disk.
        for t, lines in logged_lines.items():
            seqs = [json.loads(x)["sequenceNumber"] for x in lines]
            if seqs != list(range(len(seqs))):
                problems.append(f"{t}: sequence numbers not gap-free")
            doubled += len(lines) - len(set(lines))
        for p in self.published:
            if p.package_json not in logged_set[p.topic]:
                lost += 1
                problems.append(f"{p.topic}#{p.sequence_number} published but not in the package log")
        bad = [p for p in self.published if not sdk_verify(p.package_json)]
        problems += [f"{p.topic}#{p.sequence_number} does not verify with the SDK" for p in bad]
        # 2. The chunk chain: SDK-verified; logged IMU packages each in one chunk or the open chunk.
        d = topic_dir(self.data, "/camp/imu")
        chunks, data, result = sdk_chain(d)
        if not getattr(result, "valid", result):
            problems.append(f"chunk chain does not verify with the SDK: {result}")
        from test_stream_e2e import plaintext_lines
        in_chunks = plaintext_lines(d)
        open_lines = [x for x in (d / "open.jsonl").read_text().splitlines()[1:] if x] if (d / "open.jsonl").exists() else []
        seen = in_chunks + open_lines
        doubled += len(seen) - len(set(seen))
        missing = logged_set["/camp/imu"] - set(seen)
        lost += len(missing)
        # 3. Events: acknowledged submits exactly once; one fare event per logged fare package.
        reg = event_registry(chain)
        events = [reg.functions.getEventAt(mid, i).call() for i in range(reg.functions.getEventCount(mid).call())]
        values = [e[2] for e in events]
        for v in self.acked_submits:
            n = values.count(v)
            lost += n == 0
            doubled += max(0, n - 1)
        fare_events = [e for e in events if e[1] == 0]
        hashes = [e[4] for e in fare_events]
        doubled += len(hashes) - len(set(hashes))
        want_fares = len(logged_lines["/camp/fare"])
        if len(fare_events) != want_fares:
            (problems.append(f"{len(fare_events)} fare events on chain for {want_fares} fare packages"))
            lost += max(0, want_fares - len(fare_events))
            doubled += max(0, len(fare_events) - want_fares)
        # The node's own counters (~/status) agree with the chain after every crash.
        produced, submitted, included, failed, pending = self.final_rules.get("fare", (0, 0, 0, 0, 0))
        if (included, pending, failed) != (len(fare_events), 0, 0) or submitted != want_fares:
            problems.append(f"~/status fare counters {self.final_rules.get('fare')} disagree with the chain "
                            f"({len(fare_events)} fare events for {want_fares} packages)")
        # 4. Nonces: the signer's transactions are exactly the outbox's included intents, one each.
        signer = chain.accounts[0].address
        nonce = chain.w3.eth.get_transaction_count(signer)
        included = {}
        for f in (self.data / "chain").rglob("*.json"):
            try:
                rec = json.loads(f.read_text())
            except (ValueError, OSError):
                continue
            if isinstance(rec, dict) and rec.get("state") == "included" and rec.get("nonce") is not None:
                included.setdefault(rec["nonce"], set()).add((rec.get("receipt") or {}).get("tx_hash"))
        double_nonce = [n for n, h in included.items() if len(h) > 1]
        doubled += len(double_nonce)
        if any(n >= nonce for n in included):
            problems.append(f"an included intent's nonce is not below the signer's nonce {nonce}")
        # 5. S3: every sealed chunk once, byte-identical.
        s3 = self.s3()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        doubled += len(keys) - len(set(keys))
        for c in chunks:
            key = f"{PREFIX}/{d.name}/chunk-{c.index}.bin"
            if key not in keys:
                lost += 1
                problems.append(f"chunk {c.index} not in S3")
            elif s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() != data[c.index]:
                problems.append(f"chunk {c.index} in S3 differs from the local ciphertext")
        return {"seed": self.args.seed, "cycles": self.args.cycles, "node_runs": self.runs, "faults": self.faults,
                "messages_sent": self.sent, "packages_audited": sum(len(v) for v in logged_lines.values()),
                "published_verified": len(self.published), "chunks_audited": len(chunks),
                "events_audited": len(events), "submits_acknowledged": len(self.acked_submits),
                "signer_nonce": nonce, "lost": lost, "doubled": doubled, "problems": problems[:20]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--short", action="store_true", help="4 cycles of 1-2.5 s (what CI runs)")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    args = ap.parse_args()
    if args.short:
        args.cycles = min(args.cycles, 4)
    import tempfile
    work = args.work or Path(tempfile.mkdtemp(prefix="peaqos-campaign-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = Campaign(args, work).run()
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))
    ok = report["lost"] == 0 and report["doubled"] == 0 and not report["problems"]
    print(f"campaign: {report['faults']['kill9']} kills, {report['faults']['chain_down']} chain outages, "
          f"{report['faults']['s3_down']} S3 outages; {report['packages_audited']} packages, "
          f"{report['chunks_audited']} chunks, {report['events_audited']} events audited; "
          f"lost {report['lost']}, doubled {report['doubled']}" + ("" if ok else f"; problems: {report['problems']}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
