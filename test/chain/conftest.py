"""pytest wiring for test/chain: makes ``harness`` importable and loads its fixtures."""

import os
import sys
from pathlib import Path

# The SDKs send usage analytics unless told not to; there is no network here anyway.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PEAQOS_TELEMETRY", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = ("harness",)
