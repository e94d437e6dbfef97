"""The committed SDK 0.11.2 vectors (test/fixtures/sdk/vectors/v1_smart_account_bridge.json) are
what peaq-os-sdk 0.11.2 sends today: sdk011_vectors.py runs the SDK again (in its own venv,
through a recording RPC proxy in front of a fresh test chain) and the result must equal the file."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SDK011_PYTHON = Path(os.environ.get("PEAQOS_SDK011_PYTHON", HERE.parents[1] / ".venv-sdk011" / "bin" / "python"))
FIXTURE = HERE.parents[0] / "fixtures" / "sdk" / "vectors" / "v1_smart_account_bridge.json"


def test_committed_vectors_are_what_sdk_0_11_2_sends(tmp_path):
    assert SDK011_PYTHON.exists(), (f"{SDK011_PYTHON} missing: scripts/test creates it "
                                    "(python3 -m venv .venv-sdk011 && .venv-sdk011/bin/pip install peaq-os-sdk==0.11.2 pytest)")
    out = tmp_path / "vectors.json"
    env = {**os.environ, "DO_NOT_TRACK": "1", "PEAQOS_TELEMETRY": "0"}
    proc = subprocess.run([str(SDK011_PYTHON), str(HERE / "sdk011_vectors.py"), "--out", str(out)],
                          cwd=HERE, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads(out.read_text()) == json.loads(FIXTURE.read_text())
