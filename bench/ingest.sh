#!/usr/bin/env bash
# Ingest benchmark (issue: the spine). Builds the release binary and drives it end to end.
# Usage: bash bench/ingest.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin openclaw-trace --example ingest_bench
strip -o /tmp/openclaw-trace.stripped target/release/openclaw-trace 2>/dev/null || cp target/release/openclaw-trace /tmp/openclaw-trace.stripped
echo "stripped size: $(stat -c %s /tmp/openclaw-trace.stripped) bytes"
target/release/examples/ingest_bench target/release/openclaw-trace "$@"
