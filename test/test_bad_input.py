"""Bad input at start: a clear error naming what is wrong, a non-zero exit, never a panic."""
from __future__ import annotations

import os
import time

import pytest

from peaqos_harness import DEMO_KEY, run_node_expecting_failure

import rclpy  # noqa: F401


def check_failure(code: int, out: str, *expected: str) -> None:
    assert code != 0, out
    assert "panicked" not in out and "RUST_BACKTRACE" not in out, out
    for e in expected:
        assert e in out, (e, out)
    assert DEMO_KEY[2:] not in out


def test_malformed_policy_names_file_and_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("schema_version: 1\ntopics:\n  - topic: /x\n    type: std_msgs/msg/String\n    fields:\n      - {path: data, actoin: exclude}\n")
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(p), "data_dir": str(tmp_path / "d")})
    check_failure(code, out, str(p), "actoin")


def test_policy_with_unknown_action(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("schema_version: 1\ntopics:\n  - topic: /x\n    type: std_msgs/msg/String\n    fields:\n      - {path: data, action: shred}\n")
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(p), "data_dir": str(tmp_path / "d")})
    check_failure(code, out, str(p), "shred")


def test_missing_policy_file(tmp_path):
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(tmp_path / "nope.yaml"), "data_dir": str(tmp_path / "d")})
    check_failure(code, out, "nope.yaml")


def test_unknown_message_type(tmp_path):
    p = tmp_path / "map.yaml"
    p.write_text("schema_version: 1\ntopics:\n  - topic: /x\n    type: no_such_pkg/msg/Nothing\n")
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(p), "data_dir": str(tmp_path / "d")})
    check_failure(code, out, "/x", "no_such_pkg/msg/Nothing")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_file_readable_by_others_is_refused(tmp_path, mode):
    key = tmp_path / "machine.key"
    key.write_text(DEMO_KEY + "\n")
    os.chmod(key, mode)
    env = {"PEAQOS_PRIVATE_KEY": ""}
    code, out = run_node_expecting_failure(tmp_path, {"key_file": str(key), "data_dir": str(tmp_path / "d")}, env)
    check_failure(code, out, str(key))


def test_malformed_key_is_refused_without_echoing_it(tmp_path):
    bad = "0x" + "zz" + DEMO_KEY[4:]
    code, out = run_node_expecting_failure(tmp_path, {"data_dir": str(tmp_path / "d")}, {"PEAQOS_PRIVATE_KEY": bad})
    check_failure(code, out, "PEAQOS_PRIVATE_KEY")
    assert bad[4:] not in out


def test_no_key_at_all(tmp_path):
    env = {"PEAQOS_PRIVATE_KEY": ""}
    code, out = run_node_expecting_failure(tmp_path, {"data_dir": str(tmp_path / "d")}, env)
    check_failure(code, out, "PEAQOS_PRIVATE_KEY")


@pytest.mark.parametrize("value", ["513", "-1"])
def test_merge_max_events_out_of_range_names_the_parameter(tmp_path, value):
    code, out = run_node_expecting_failure(tmp_path, {"data_dir": str(tmp_path / "d"), "chain.merge_max_events": value})
    check_failure(code, out, "chain.merge_max_events")


# ---- issue 14: hostile policy files at start (each failed on main: started, hung or misnamed)

BATTERY = "schema_version: 1\ntopics:\n  - topic: /battery_state\n    type: sensor_msgs/msg/BatteryState\n"


def start_with_policy(tmp_path, text: str, timeout: float = 20.0) -> tuple[str, int, str]:
    p = tmp_path / "map.yaml"
    p.write_text(text)
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(p), "data_dir": str(tmp_path / "d")},
                                           timeout=timeout)
    return str(p), code, out


@pytest.mark.parametrize("rules,key,needle", [
    ("      - {path: locaton, action: encrypt}\n", "topics[0].fields[0].path", "\"locaton\" does not exist"),
    ("      - {path: location, action: encrypt}\n      - {path: serial_numbr, action: exclude}\n",
     "topics[0].fields[1].path", "\"serial_numbr\" does not exist"),
    ("      - {path: cell_voltage.x, action: exclude}\n", "topics[0].fields[0].path", "an array"),
    ("      - {path: 5, action: exclude}\n", "topics[0].fields[0].path", "expected a string"),
])
def test_field_rule_that_can_never_match_stops_the_node(tmp_path, rules, key, needle):
    file, code, out = start_with_policy(tmp_path, BATTERY + "    fields:\n" + rules)
    check_failure(code, out, file, key, needle)
    if "does not exist" in needle:
        check_failure(code, out, "topic /battery_state: rule {path: ")


def test_field_rule_through_an_array_of_messages_stops_the_node(tmp_path):
    text = ("schema_version: 1\ntopics:\n  - topic: /diagnostics_in\n    type: diagnostic_msgs/msg/DiagnosticArray\n"
            "    fields:\n      - {path: status.message, action: encrypt}\n")
    file, code, out = start_with_policy(tmp_path, text)
    check_failure(code, out, file, "topics[0].fields[0].path", "goes through \"status\", an array")


def test_fifo_policy_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "map.yaml"
    os.mkfifo(fifo)
    code, out = run_node_expecting_failure(tmp_path, {"policy_file": str(fifo), "data_dir": str(tmp_path / "d")},
                                           timeout=15)
    check_failure(code, out, str(fifo), "not a regular file")


@pytest.mark.parametrize("text,key,needle", [
    ("[" * 200_000, "<root>", "nesting deeper than 32"),
    (BATTERY + "    qos: {reliability: reliable, durability: volatile, depth: 4294967296}\n", "topics[0].qos.depth",
     "at most 100000"),
    (BATTERY.replace("/battery_state", "/" + "t" * 300_000), "topics[0].topic", "longer than 247"),
    ("package_schema_version: null\n" + BATTERY, "package_schema_version", "expected a string"),
    ("package_schema_version: 5\n" + BATTERY, "package_schema_version", "expected a string"),
    (BATTERY + "    stream: []\n", "topics[0].stream", "must be a mapping"),
    (BATTERY.replace("type: sensor", "type: !foo sensor"), "<root>", "YAML tags are not allowed"),
    (BATTERY + "    events:\n      - {name: w, event_type: activity, value: count, window: {seconds: 18446744073709551615}}\n",
     "topics[0].events[0].window.seconds", "must be 1..=31622400"),
    (BATTERY + "    events:\n      - {name: w, event_type: activity, value: count, window: {seconds: 9223372036854775807}}\n",
     "topics[0].events[0].window.seconds", "must be 1..=31622400"),
])
def test_hostile_policy_values_are_refused_quickly_naming_the_key(tmp_path, text, key, needle):
    t0 = time.monotonic()
    file, code, out = start_with_policy(tmp_path, text)
    check_failure(code, out, file, key, needle)
    assert "parameter `data_dir`" not in out
    assert time.monotonic() - t0 < 15, "start-up error took too long"
    assert max(len(line) for line in out.splitlines()) < 4000, "unbounded error line"
