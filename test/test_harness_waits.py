"""The end-to-end tests' one wait helper: deadlines scale with the machine's load, and a timeout
names what was awaited and prints the node's log tail (no ROS needed)."""
from __future__ import annotations

import os
import time

import pytest

from peaqos_harness import MAX_LOAD_SCALE, NodeProcess, poll_until, time_scale, wait_until


def test_a_timeout_names_what_it_waited_for_with_the_node_log_tail(tmp_path, monkeypatch):
    monkeypatch.setenv("PEAQOS_TEST_TIME_SCALE", "0.5")
    node = NodeProcess(tmp_path, {}, name="fake")
    node.log_path.write_text("start\n" + "x" * 20000 + "\nthe reason it hangs\n")
    t0 = time.monotonic()
    with pytest.raises(AssertionError) as e:
        wait_until(lambda: False, 1.0, "the fare after the outage", nodes=node)
    assert 0.45 <= time.monotonic() - t0 < 0.9  # 1 s × 0.5
    msg = str(e.value)
    assert "timed out waiting for the fare after the outage" in msg
    assert "fake.log" in msg and msg.endswith("the reason it hangs\n")
    assert "start" not in msg, "a tail, not the whole log"


def test_a_wait_ends_as_soon_as_the_condition_holds(monkeypatch):
    monkeypatch.setenv("PEAQOS_TEST_TIME_SCALE", "1")
    t0 = time.monotonic()
    assert poll_until(lambda: time.monotonic() - t0 > 0.2, 30)
    assert time.monotonic() - t0 < 1.0
    assert not poll_until(lambda: False, 0.1)


def test_the_deadline_grows_with_the_load_per_core(monkeypatch):
    monkeypatch.delenv("PEAQOS_TEST_TIME_SCALE", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for load, want in ((0.3, 1.0), (2.0, 1.0), (6.0, 3.0), (100.0, MAX_LOAD_SCALE)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert time_scale() == want, load
    monkeypatch.setenv("PEAQOS_TEST_TIME_SCALE", "12")
    assert time_scale() == 12.0
