"""Bad input at start: a clear error naming what is wrong, a non-zero exit, never a panic."""
from __future__ import annotations

import os

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
