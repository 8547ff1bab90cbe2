#!/usr/bin/env bash
# Costs of redaction, the metrics and live-tail hooks, and /metrics encoding (release build).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --locked --example obs_bench
