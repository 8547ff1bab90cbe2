#!/usr/bin/env bash
# The one command that runs every test. Installs nothing system-wide: tools that
# later suites need (Python venvs, npm packages) are set up under .cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --bins
# promtool and a Prometheus server for tests/metrics.rs (Debian's `prometheus` package).
bash scripts/setup-prometheus.sh
cargo test --locked --all-targets -- --test-threads=2
