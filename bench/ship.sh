#!/usr/bin/env bash
# Shipping benchmark: drains a backlog of spans (default 1,000,000) through the
# remote push (v2 envelope) and through OTLP export (http/protobuf) to a local
# receiver, and prints throughput and the daemon's RSS while draining.
# Usage: bash bench/ship.sh [SPANS]
set -euo pipefail
cd "$(dirname "$0")/.."
SPANS=${1:-1000000}
cargo build --release --locked --bin openclaw-trace --example ship_bench
target/release/examples/ship_bench --bin target/release/openclaw-trace --spans "$SPANS"
