#!/usr/bin/env bash
# Sets up what the dashboard's browser tests (tests/browser/*.test.mjs) need:
# Debian's chromium and playwright-core (npm) under .cache/browser. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PW_PKG="playwright-core@1.65.2"
DIR=".cache/browser"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null; then
  apt-get update -qq && apt-get install -y -qq npm >/dev/null
fi
MARKER="$DIR/.installed-$PW_PKG"
if [ ! -f "$MARKER" ]; then
  mkdir -p "$DIR"
  npm install --no-audit --no-fund --loglevel=error --prefix "$DIR" "$PW_PKG"
  test -f "$DIR/node_modules/playwright-core/package.json"
  touch "$MARKER"
fi
/usr/bin/chromium --version >/dev/null 2>&1
