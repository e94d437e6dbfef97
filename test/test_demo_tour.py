"""`scripts/demo --tour` runs on its own (non-interactively) and shows every capability once with
what proves it, so a newcomer's first command keeps working. It starts its own local chain (on a
free port here), the node with the demo Data Event Map, the demo robot and the tour."""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from peaqos_harness import DEMO_KEY, ROOT, free_port, scaled

CAPABILITIES = {
    "package": "peaq SDK verify_data_package: valid",
    "identity": "activated on chain by ~/activate",
    "event": "via ~/submit_event: included in block",
    "rule": "became an activity event on chain in block",
    "chunk": "peaq SDK verify_chunk_chain: valid",
    "grant": "the buyer's own key opens it (peaq SDK decrypt_chunk)",
    "sale": "the node found it on chain: chain: block",
    "buy": "paid once from the machine's account in tx",
}


def start_demo(tmp_path, *args: str) -> subprocess.Popen:
    """scripts/demo in a session of its own (as a terminal runs it), on a free chain port."""
    env = dict(os.environ, PEAQOS_DEMO_DATA_DIR=str(tmp_path / "demo" / "data"), PEAQOS_DEMO_CHAIN_PORT=str(free_port()))
    return subprocess.Popen([str(ROOT / "scripts" / "demo"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, tmp_path, timeout: float) -> tuple[str, str]:
    """Wait for the demo (killed after `timeout`); its output and a report with the node's log."""
    try:
        out, _ = proc.communicate(timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    node_log = tmp_path / "demo" / "node.log"
    tail = node_log.read_text(errors="replace")[-6000:] if node_log.exists() else "(no node log)"
    return out, f"demo output:\n{out}\n--- node.log (tail) ---\n{tail}"


def test_the_demo_tour_shows_each_capability_once_and_ends_by_itself(tmp_path):
    proc = start_demo(tmp_path, "--tour")
    out, report = finish(proc, tmp_path, 300)
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


def test_ctrl_c_stops_the_demo_without_an_error(tmp_path):
    """Ctrl-C reaches every process of the demo (the terminal signals its process group), and
    the script signals its children once more on exit: neither may print an error."""
    proc = start_demo(tmp_path)
    lines = []
    for line in proc.stdout:  # until the tour is done and the summary line runs
        lines.append(line)
        if line.startswith("demo running") or line.startswith("✗"):
            break
    # the node runs on the keystore: the key's bytes are nowhere in the data dir or its environment
    key = bytes.fromhex(DEMO_KEY.removeprefix("0x"))
    needles = [key, key.hex().encode(), key.hex().upper().encode()]
    data = tmp_path / "demo" / "data"
    pids = [d.name for d in Path("/proc").iterdir() if d.name.isdigit() and _is_demo_node(d, data)]
    assert pids, "the demo's node process"
    for pid in pids:
        assert not any(n in Path(f"/proc/{pid}/environ").read_bytes() for n in needles), "key in the environment"
    for f in data.rglob("*"):
        if f.is_file():
            assert not any(n in f.read_bytes() for n in needles), f"plaintext machine key in {f}"
    assert (tmp_path / "demo" / "keys" / "machine.json").exists()
    os.killpg(proc.pid, signal.SIGINT)
    out, report = finish(proc, tmp_path, 60)
    out = "".join(lines) + out
    assert "demo running (Ctrl-C stops)" in out, report
    assert "demo stopped" in out, report
    assert "[ERROR]" not in out and "Traceback" not in out and "rcl_trigger_guard_condition" not in out, report


def _is_demo_node(d: Path, data: Path) -> bool:
    try:
        cmd = (d / "cmdline").read_bytes()
    except OSError:
        return False
    return b"peaqos_node" in cmd and b"--ros-args" in cmd and str(data).encode() in cmd
