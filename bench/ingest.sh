#!/usr/bin/env bash
# Ingest benchmark (issue: the spine). Builds the release binary and drives it end to end.
# Usage: bash bench/ingest.sh [--quick]
# Variants (environment): BENCH_ONLY_BATCHED=1 runs only the batched phase (for profiling);
# BENCH_LATENCY_RUNS=N runs only the 1,000 events/s latency phase, N times on one daemon;
# BENCH_LATENCY_FIRST=1 also measures latency before any load.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin openclaw-trace --example ingest_bench
strip -o /tmp/openclaw-trace.stripped target/release/openclaw-trace 2>/dev/null || cp target/release/openclaw-trace /tmp/openclaw-trace.stripped
echo "stripped size: $(stat -c %s /tmp/openclaw-trace.stripped) bytes"
target/release/examples/ingest_bench target/release/openclaw-trace "$@"
