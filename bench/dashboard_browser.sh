#!/usr/bin/env bash
# The dashboard in headless Chromium: how soon the runs view is usable and how a
# 2,000-span run renders. Needs scripts/setup-browser.sh (chromium, playwright-core).
# Usage: bash bench/dashboard_browser.sh [path/to/openclaw-trace] [--runs N] [--repeat R]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/openclaw-trace}
shift || true
[ -x "$BIN" ] || cargo build --release --bins
bash scripts/setup-browser.sh
OCT_BIN="$BIN" node bench/dashboard_browser.mjs "$@"
