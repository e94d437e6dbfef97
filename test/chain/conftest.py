"""pytest wiring for test/chain: makes ``harness`` importable and loads its fixtures."""

import os
import sys
from pathlib import Path

# The SDKs send usage analytics unless told not to; there is no network here anyway.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PEAQOS_TELEMETRY", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Re-export the harness fixtures here: `pytest_plugins` is only allowed in the rootdir's
# conftest, and the repository's test run (scripts/test) has the repository as rootdir.
from harness import chain, fresh_chain, test_chain  # noqa: E402,F401
