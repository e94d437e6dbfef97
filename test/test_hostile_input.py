"""Hostile input against one running node (issue 14): a seeded, table-driven suite of service
calls and extreme messages.

For every call: it is answered (within a bound), invalid input never succeeds, and every refusal
names a field of the request as spelled in the .srv (or of the Event message inside it) — except
refusals for outside conditions (the chain RPC is deliberately unreachable here), whose codes are
listed in CONDITIONS and which say what is wrong in their message. Afterwards the node is alive,
has packaged the extreme messages, and its log holds no line forged by input and no line longer
than the bound. The policy-file cases are in `src/core/tests/hostile_policy.rs` (cargo, no ROS).

Size (README "Hostile input"): reproducible from SEED; the counts are printed by the tests.
"""
from __future__ import annotations

import math
import random
import re
import time
import unicodedata
from pathlib import Path

import pytest

from peaqos_harness import NodeProcess, call_service, sleep_scaled, wait_until

import rclpy  # noqa: E402  (no skip: the suite needs ROS 2 and must run)
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from nav_msgs.msg import Path as PathMsg  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import BatteryState  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from peaqos_node.msg import Event  # noqa: E402
from peaqos_node.srv import (  # noqa: E402
    Activate, BatchSubmitEvents, DeploySmartAccount, FundFromGasStation, GetStatus, GrantAccess, MintNft, QueryMachine,
    ReadDidAttribute, RegisterFor, SealDataset, SmartAccountAddress, SubmitEvent, TokenIdOf, ValidateEvent,
    WriteMachineDidAttributes, WriteProxyDidAttributes,
)

SEED = 0x14
RANDOM_CASES = 150
FORGED = "[ERROR] [0.0] [peaqos_node]: FORGED"
MAX_LOG_LINE = 4000
# Refusals for conditions outside the request (no chain reachable, no MCR API configured, ...).
CONDITIONS = {"RPC_UNAVAILABLE", "RPC_ERROR", "RPC_RATE_LIMITED", "SERVICE_UNAVAILABLE", "DEPLOYMENT_UNAVAILABLE",
              "SIGNER_UNAVAILABLE", "CONTRACT_NOT_DEPLOYED", "CHAIN_DISABLED", "IO_ERROR", "STORAGE_ERROR",
              "GENERATION_UNSUPPORTED", "CONFIG_INVALID"}

ADDR = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
LOW_ORDER = ["00" * 32, "01" + "00" * 31, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
             "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", "ec" + "ff" * 30 + "7f",
             "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f", "00" * 31 + "80"]
GOOD_BUYER = bytes(range(1, 33)).hex()  # an ordinary X25519 public key, not low order

# Hostile strings tried in every string field.
STRINGS = ["", " ", "\t", "0", "-0", "05", "+5", " 5", "5 ", "5\n", "1.5", "1e3", "-1", "NaN",
           "18446744073709551616", "1" * 100, "0x", "0X" + ADDR[2:], ADDR[2:], " " + ADDR, ADDR + " ", ADDR.lower(),
           ADDR[:-1], ADDR + "0", "did:peaq:" + ADDR, "/h/battery\n" + FORGED, "é\u202e\u0000x", "\x1b[31mred",
           "x" * 300_000, "{}", "[", "'", "%s%n"] + LOW_ORDER[:3]
INTS_U64 = [0, 1, 2**32, 2**63 - 1, 2**64 - 1]

POLICY = """\
schema_version: 1
topics:
  - topic: /h/battery
    type: sensor_msgs/msg/BatteryState
    qos: {reliability: reliable, durability: volatile, depth: 100}
    fields:
      - {path: location, action: encrypt}
      - {path: serial_number, action: exclude}
    stream:
      chunk: {max_messages: 2, max_age: 1}
  - topic: /h/path
    type: nav_msgs/msg/Path
    qos: {reliability: reliable, durability: volatile, depth: 10}
    queue_size: 4
    # A 100,000-pose Path takes about 190 MB as converted fields: room for one (the byte bounds
    # would otherwise drop it, counted, which test_overload_e2e.py covers).
    queue_max_bytes: 536870912
"""

ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
DECIMAL_RE = re.compile(r"0|[1-9][0-9]*")


def is_address(v: str, empty_ok: bool = False, did_ok: bool = False) -> bool:
    if empty_ok and v == "":
        return True
    if did_ok and v.startswith("did:peaq:"):
        v = v[len("did:peaq:"):]
    return ADDRESS_RE.fullmatch(v) is not None


def is_decimal(v: str, empty_ok: bool = False) -> bool:
    return (empty_ok and v == "") or DECIMAL_RE.fullmatch(v) is not None


def is_totp_code(v: str) -> bool:
    """What the node takes as a 2FA code: 1..64 bytes, no control or space characters. A ROS string
    ends at its first NUL (C strings), so the node sees only what precedes it."""
    v = v.split("\x00", 1)[0]
    return 0 < len(v.encode()) <= 64 and not any(unicodedata.category(c) == "Cc" or c.isspace() for c in v)


ACCOUNT_RULES = {"owner": lambda v: is_address(v, empty_ok=True), "machine": lambda v: is_address(v, empty_ok=True),
                 "salt": lambda v: is_decimal(v, empty_ok=True)}


def is_buyer_key(v: str) -> bool:
    h = v[2:] if v.startswith("0x") else v
    return re.fullmatch(r"[0-9a-fA-F]{64}", h) is not None and h.lower() not in LOW_ORDER


# service name → (type, base request fields, {field: validity rule}); a field without a rule
# has no validity rule of its own (any answer is fine, but a refusal must name a field).
SERVICES = {
    "validate_event": (ValidateEvent, {}, {}),
    "submit_event": (SubmitEvent, dict(machine_id="1", event_type=0, value="5", currency="USD", timestamp=1_735_000_000,
                                       no_wait=True),
                     {"machine_id": is_decimal, "value": is_decimal}),
    "batch_submit_events": (BatchSubmitEvents, {}, {}),
    "activate": (Activate, dict(machine_type="robot", credential_subject_hex="0x01", manufacturer=ADDR, tier=0),
                 {"manufacturer": is_address, "credential_subject_hex": lambda v: re.fullmatch(r"0x([0-9a-fA-F]{2})+", v) is not None, "controller": lambda v: is_address(v, empty_ok=True),
                  # economics2 (this node): proxy activation is legacy only, so any operator is refused
                  "operator_address": lambda v: v == "",
                  "expected_machine_id": lambda v: is_decimal(v, empty_ok=True),
                  "max_net_peaq_amount": lambda v: is_decimal(v, empty_ok=True)}),
    "register_for": (RegisterFor, dict(machine_address=ADDR),
                     {"machine_address": is_address, "proxy_address": lambda v: is_address(v, empty_ok=True)}),
    "mint_nft": (MintNft, dict(machine_id="1"),
                 {"machine_id": is_decimal, "recipient": lambda v: is_address(v, empty_ok=True),
                  "signer_address": lambda v: is_address(v, empty_ok=True)}),
    "token_id_of": (TokenIdOf, dict(machine_id="1"), {"machine_id": is_decimal}),
    "write_machine_did_attributes": (WriteMachineDidAttributes, dict(machine_id="1", nft_token_id="1"),
                                     {"machine_id": is_decimal, "nft_token_id": is_decimal,
                                      "operator_did": lambda v: is_address(v, empty_ok=True, did_ok=True)}),
    "write_proxy_did_attributes": (WriteProxyDidAttributes, dict(proxy_machine_id="1", machine_ids=["2"]),
                                   {"proxy_machine_id": is_decimal,
                                    "signer_address": lambda v: is_address(v, empty_ok=True)}),
    "read_did_attribute": (ReadDidAttribute, dict(did_address=ADDR, name="machineId"),
                           {"did_address": lambda v: is_address(v, did_ok=True)}),
    "query_machine": (QueryMachine, dict(did="did:peaq:" + ADDR), {}),
    "grant_access": (GrantAccess, dict(topic="/h/battery", buyer_public_key_hex=GOOD_BUYER, first_index=0, last_index=0),
                     {"topic": lambda v: v == "/h/battery", "buyer_public_key_hex": is_buyer_key}),
    "seal_dataset": (SealDataset, dict(topic="/h/battery", first_index=0, last_index=0),
                     {"topic": lambda v: v == "/h/battery"}),
    # economics2 node: valid requests reach GENERATION_UNSUPPORTED (the legacy factory), invalid ones are refused first
    "smart_account_address": (SmartAccountAddress, {}, ACCOUNT_RULES),
    "deploy_smart_account": (DeploySmartAccount, {}, ACCOUNT_RULES),
    # no Gas Station configured here: a well-formed code reaches CONFIG_INVALID, a malformed one is refused first
    "fund_from_gas_station": (FundFromGasStation, dict(two_factor_code="123456"), {"two_factor_code": is_totp_code}),
}
EVENT_RULES = {"machine_id": is_decimal, "value": is_decimal}
BASE_EVENT = dict(machine_id="1", event_type=0, value="5", currency="USD", timestamp=1_735_000_000)


def string_fields(srv) -> list[str]:
    return [f for f, t in srv.Request.get_fields_and_field_types().items() if t == "string"]


def int_fields(srv) -> list[str]:
    return [f for f, t in srv.Request.get_fields_and_field_types().items() if t in ("uint64", "int64")]


def request_field_names(srv) -> set[str]:
    names = set(srv.Request.get_fields_and_field_types())
    if "event" in names or "events" in names:
        names |= set(Event.get_fields_and_field_types())
    return names


class Case:
    def __init__(self, service: str, fields: dict, event: dict | None, must_refuse: bool, why: str):
        self.service, self.fields, self.event, self.must_refuse, self.why = service, fields, event, must_refuse, why

    def request(self):
        srv = SERVICES[self.service][0]
        kw = dict(self.fields)
        if self.service == "validate_event":
            kw["event"] = Event(**self.event)
        elif self.service == "batch_submit_events":
            kw["events"] = [Event(**self.event)]
            kw["no_wait"] = True
        return srv.Request(**kw)


def single_field_cases() -> list[Case]:
    cases = []
    for name, (srv, base, rules) in SERVICES.items():
        if name in ("validate_event", "batch_submit_events"):
            for f in ("machine_id", "value", "currency", "source_tx_hash"):
                for v in STRINGS:
                    ev = dict(BASE_EVENT, **{f: v})
                    bad = f in EVENT_RULES and not EVENT_RULES[f](v)
                    cases.append(Case(name, {}, ev, bad, f"event.{f}={v[:30]!r}"))
            continue
        for f in string_fields(srv):
            for v in STRINGS:
                rule = rules.get(f)
                cases.append(Case(name, dict(base, **{f: v}), None, rule is not None and not rule(v), f"{f}={v[:30]!r}"))
        for f in int_fields(srv):
            for v in INTS_U64:
                signed = srv.Request.get_fields_and_field_types()[f] == "int64"
                kw = dict(base, **{f: (v if v < 2**63 else -1) if signed else v})
                # A range past the (few) sealed chunks cannot succeed.
                bad = name in ("grant_access", "seal_dataset") and f == "last_index" and v > 1000
                cases.append(Case(name, kw, None, bad, f"{f}={v}"))
    return cases


def random_cases(rng: random.Random) -> list[Case]:
    """Several hostile fields at once, seeded."""
    out = []
    names = [n for n in SERVICES if n not in ("validate_event", "batch_submit_events")]
    for _ in range(RANDOM_CASES):
        name = rng.choice(names)
        srv, base, rules = SERVICES[name]
        fields = dict(base)
        bad = False
        for f in rng.sample(string_fields(srv), k=min(3, len(string_fields(srv)))):
            v = rng.choice(STRINGS)
            if rng.random() < 0.3:
                v = v + rng.choice(["\n", " ", "0", "x"])
            fields[f] = v
            bad |= f in rules and not rules[f](v)
        out.append(Case(name, fields, None, bad, f"random {sorted(fields)}"))
    return out


@pytest.fixture(scope="module")
def hostile_node(tmp_path_factory, rclpy_ctx):
    tmp = tmp_path_factory.mktemp("hostile")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    node = NodeProcess(tmp, {
        "policy_file": str(policy), "data_dir": str(tmp / "data"),
        # An RPC nobody listens on: chain calls that pass validation fail as an outside condition.
        "chain.rpc_urls": "['http://127.0.0.1:9']", "chain.receipt_timeout": "1.0",
        "pipeline.max_queued_bytes": "536870912",
    }).start()
    ros = rclpy_ctx.create_node("peaqos_hostile_client")
    try:
        node.wait_for_log("subscribed to /h/path")
        yield node, ros, tmp
    finally:
        ros.destroy_node()
        node.stop()


def call(ros, node, srv, name, req, clients={}):
    key = (id(ros), name)
    if key not in clients:
        clients[key] = ros.create_client(srv, f"/peaqos_node/{name}")
    return call_service(ros, clients[key], req, timeout=30.0, proc=node)


def publish(ros, topic, msg_type, msgs, depth=100):
    pub = ros.create_publisher(msg_type, topic, QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE))
    wait_until(lambda: pub.get_subscription_count() > 0, 20, f"the node to subscribe to {topic}", spin=ros)
    for m in msgs:
        pub.publish(m)
        rclpy.spin_once(ros, timeout_sec=0.001)
    return pub


def topic_status(ros, node, topic):
    st = call(ros, node, GetStatus, "status", GetStatus.Request())
    return next(t for t in st.topics if t.topic == topic), st


def wait_packaged(ros, node, topic, n, timeout=60.0):
    def handled(t) -> bool:
        return t.packaged + t.errors + t.dropped >= n

    wait_until(lambda: handled(topic_status(ros, node, topic)[0]), timeout,
               lambda: f"{topic}: {n} messages handled (last: {topic_status(ros, node, topic)[0]})", nodes=node, poll=0.2)
    return topic_status(ros, node, topic)[0]


def extreme_batteries() -> list[BatteryState]:
    """Extreme but well-formed messages: huge strings, non-finite floats, big arrays, control characters."""
    out = []
    floats = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e38, -1e-45, 3.4028235e38]
    for i, f in enumerate(floats):
        out.append(BatteryState(voltage=f, temperature=f, cell_voltage=[f] * 3, location="lab", serial_number="s"))
    for s in ["", "x" * 1_000_000, "\n" + FORGED, "\u0000\u202e\U0001F600", "\\u0000\"'"]:
        out.append(BatteryState(location=s, serial_number=s, header=Header(frame_id=s)))
    out.append(BatteryState(cell_voltage=[1.5] * 200_000, cell_temperature=[math.nan] * 1000))
    out.append(BatteryState(power_supply_status=255, power_supply_health=255, present=True))
    for sec in (0, 2**31 - 1, -2**31):
        out.append(BatteryState(header=Header(stamp=Time(sec=sec, nanosec=999_999_999))))
    return out


def test_services_refuse_hostile_requests_naming_a_field(hostile_node):
    node, ros, tmp = hostile_node
    # Two sealed chunks on /h/battery, so a grant of a valid range can succeed.
    publish(ros, "/h/battery", BatteryState, [BatteryState(voltage=float(i), location="lab") for i in range(4)])
    def two_sealed() -> bool:
        st = call(ros, node, GetStatus, "status", GetStatus.Request())
        return any(s.topic == "/h/battery" and s.last_chunk_index >= 1 for s in st.streams)

    wait_until(two_sealed, 30, "two sealed chunks of /h/battery", nodes=node, poll=0.2)

    cases = single_field_cases() + random_cases(random.Random(SEED))
    counts = {"cases": len(cases), "succeeded": 0, "refused": 0, "conditions": 0}
    failures = []
    for c in cases:
        srv = SERVICES[c.service][0]
        t0 = time.monotonic()
        r = call(ros, node, srv, c.service, c.request())
        took = time.monotonic() - t0
        if took > 20:
            failures.append(f"{c.service} {c.why}: answered after {took:.1f}s")
        if r.success:
            counts["succeeded"] += 1
            if c.must_refuse:
                failures.append(f"{c.service} {c.why}: wrongly accepted ({r.message[:200]})")
            continue
        if r.error_code in CONDITIONS:
            counts["conditions"] += 1
            if not r.message:
                failures.append(f"{c.service} {c.why}: {r.error_code} without a message")
            if c.must_refuse:
                # Invalid input must be refused by validation, before anything reaches the chain.
                failures.append(f"{c.service} {c.why}: not validated, reached {r.error_code} ({r.message[:200]})")
            continue
        counts["refused"] += 1
        field = re.sub(r"\[\d+\]$", "", r.error_field).split(".")[-1]
        if field not in request_field_names(srv):
            failures.append(f"{c.service} {c.why}: {r.error_code} names {r.error_field!r}, not a request field "
                            f"({r.message[:200]})")
    print(f"hostile service calls (seed {SEED:#x}): {counts}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:60])
    assert node.proc.poll() is None, "node died"

    # Low-order buyer keys are refused by name even with chunks to grant (issue 14 #2).
    for k in LOW_ORDER:
        r = call(ros, node, GrantAccess, "grant_access",
                 GrantAccess.Request(topic="/h/battery", buyer_public_key_hex=k, first_index=0, last_index=1))
        assert (r.success, r.error_field) == (False, "buyer_public_key_hex") and "low-order" in r.message, (k, r)
    ok = call(ros, node, GrantAccess, "grant_access",
              GrantAccess.Request(topic="/h/battery", buyer_public_key_hex=GOOD_BUYER, first_index=0, last_index=1))
    assert ok.success, (ok.error_code, ok.error_field, ok.message)
    # A range of 2^64 chunks names its end (issue 14 #4).
    for srv, name in ((GrantAccess, "grant_access"), (SealDataset, "seal_dataset")):
        kw = dict(topic="/h/battery", first_index=0, last_index=2**64 - 1)
        if srv is GrantAccess:
            kw["buyer_public_key_hex"] = GOOD_BUYER
        r = call(ros, node, srv, name, srv.Request(**kw))
        assert (r.success, r.error_code, r.error_field) == (False, "NOT_FOUND", "last_index"), r


def test_extreme_messages_are_packaged_and_the_log_is_not_forged(hostile_node):
    node, ros, tmp = hostile_node
    before, _ = topic_status(ros, node, "/h/battery")
    msgs = extreme_batteries()
    publish(ros, "/h/battery", BatteryState, msgs, depth=len(msgs))
    t = wait_packaged(ros, node, "/h/battery", before.received + len(msgs))
    assert t.packaged - before.packaged == len(msgs), (t, before)
    # Requests with forged log lines and a 300,000-character topic (issue 14 #7).
    for topic in ["/h/battery\n" + FORGED, "/x" * 150_000]:
        r = call(ros, node, GrantAccess, "grant_access", GrantAccess.Request(topic=topic, buyer_public_key_hex=GOOD_BUYER))
        assert (r.success, r.error_field) == (False, "topic")
    sleep_scaled(0.5)
    log = node.output()
    forged = [line for line in log.splitlines() if line.startswith(FORGED) or line.startswith("FORGED")]
    assert not forged, forged
    long_lines = [len(line) for line in log.splitlines() if len(line) > MAX_LOG_LINE]
    assert not long_lines, f"log lines longer than {MAX_LOG_LINE}: {long_lines}"
    assert "panicked" not in log
    print(f"extreme messages: {len(msgs)} BatteryState packaged")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_large_nested_message_memory_is_returned(hostile_node):
    """One 100,000-pose nav_msgs/Path (7.2 MB) raised the node's RSS from 40 MB to 675 MB, where
    it stayed (issue 14 #8). After packaging it, the node gives the memory back."""
    node, ros, tmp = hostile_node
    base = rss_kb(node.proc.pid)
    path = PathMsg()
    path.header.frame_id = "map"
    pose = PoseStamped()
    pose.header.frame_id = "map"
    pose.pose.orientation.w = 1.0
    path.poses = [pose] * 100_000
    before, _ = topic_status(ros, node, "/h/path")
    publish(ros, "/h/path", PathMsg, [path], depth=1)
    t = wait_packaged(ros, node, "/h/path", before.received + 1, timeout=120)
    assert t.packaged == before.packaged + 1, t
    sleep_scaled(2.0)
    after = rss_kb(node.proc.pid)
    print(f"RSS before {base / 1024:.1f} MiB, after one 100,000-pose Path {after / 1024:.1f} MiB")
    assert after - base < 100 * 1024, f"RSS grew by {(after - base) / 1024:.0f} MiB and stayed"
    assert node.proc.poll() is None
