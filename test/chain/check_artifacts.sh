#!/usr/bin/env bash
# Recompile into a temporary directory and fail if anything differs from the committed
# test/chain/artifacts (stale or hand-edited artifacts).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/solc ] || npm ci --no-audit --no-fund
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node build.js --out "$tmp" >/dev/null
if ! diff -r "$tmp" artifacts; then
  echo "check_artifacts: committed artifacts differ from a fresh compile; run test/chain/build.sh and commit" >&2
  exit 1
fi
echo "check_artifacts: artifacts match a fresh compile"
