#!/usr/bin/env bash
# Compile the test contracts with the pinned solc into test/chain/artifacts (see build.js).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/solc ] || npm ci --no-audit --no-fund
exec node build.js "$@"
