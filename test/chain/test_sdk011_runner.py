"""Runs the SDK 0.11.2 legacy suite (``sdk011_legacy.py``) in its own venv from the main suite.

SDK 0.11.2 and 0.12.1 are the same import name, so they cannot share a process; the legacy
suite runs as a subprocess under ``/work/main/.venv-sdk011`` (override with the
``PEAQOS_SDK011_PYTHON`` environment variable). Skipped when that interpreter is missing:
create it with ``python3.11 -m venv .venv-sdk011 && .venv-sdk011/bin/pip install
peaq-os-sdk==0.11.2 pytest``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SDK011_PYTHON = Path(os.environ.get("PEAQOS_SDK011_PYTHON", HERE.parents[1] / ".venv-sdk011" / "bin" / "python"))


def test_sdk011_legacy_suite_passes():
    assert SDK011_PYTHON.exists(), (f"{SDK011_PYTHON} missing: scripts/test creates it "
                                    "(python3 -m venv .venv-sdk011 && .venv-sdk011/bin/pip install peaq-os-sdk==0.11.2 pytest)")
    proc = subprocess.run(
        [str(SDK011_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
         str(HERE / "sdk011_legacy.py")],
        cwd=HERE, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"SDK 0.11.2 legacy suite failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
