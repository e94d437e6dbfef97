"""`scripts/demo --tour` runs on its own (non-interactively) and shows every capability once with
what proves it, so a newcomer's first command keeps working. It starts its own local chain (on a
free port here), the node with the demo Data Event Map, the demo robot and the tour."""
from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from peaqos_harness import ROOT, free_port, scaled

pytest.importorskip("rclpy")

CAPABILITIES = {
    "package": "peaq SDK verify_data_package: valid",
    "identity": "activated on chain by ~/activate",
    "event": "via ~/submit_event: included in block",
    "rule": "became an activity event on chain in block",
    "chunk": "peaq SDK verify_chunk_chain: valid",
    "grant": "the buyer's own key opens it (peaq SDK decrypt_chunk)",
}


def test_the_demo_tour_shows_each_capability_once_and_ends_by_itself(tmp_path):
    data = tmp_path / "demo" / "data"
    env = dict(os.environ, PEAQOS_DEMO_DATA_DIR=str(data), PEAQOS_DEMO_CHAIN_PORT=str(free_port()))
    proc = subprocess.Popen([str(ROOT / "scripts" / "demo"), "--tour"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=scaled(300))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    node_log = tmp_path / "demo" / "node.log"
    tail = node_log.read_text(errors="replace")[-6000:] if node_log.exists() else "(no node log)"
    report = f"demo output:\n{out}\n--- node.log (tail) ---\n{tail}"
    assert proc.returncode == 0, report
    for cap, proof in CAPABILITIES.items():
        lines = re.findall(rf"^✓ {cap} .*$", out, re.M)
        assert len(lines) == 1 and proof in lines[0], (cap, report)
    # one summary line a second, not a line per package
    summaries = re.findall(r"^  \[\s*\d+ s\] packages \d+ ", out, re.M)
    assert summaries and len(out.splitlines()) < 40 + 2 * len(summaries), report
    # a newcomer's first read is not an error
    assert "[ERROR]" not in out and "Traceback" not in out, report
    assert "demo stopped" in out, report
