#!/usr/bin/env bash
# Start the peaqOS test chain for a non-Python test (e.g. the Rust chain client):
#   test/chain/serve.sh [--chain-id 3338|9990] [--port P] [--block-time S] [--stdin-control]
# Installs the pinned npm packages on first use, then execs `harness.py serve` with the repo
# venv's Python (override with PEAQOS_PYTHON). Prints one JSON line, runs until SIGTERM/SIGINT.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PEAQOS_PYTHON:-$here/../../.venv/bin/python}"
if [ ! -x "$here/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ]; then
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi
exec "$python" "$here/harness.py" serve "$@"
