#!/usr/bin/env bash
# The one command that runs every test. Tools that suites need are set up by
# scripts/setup-*.sh: Python venvs and npm packages under .cache/, Debian packages via apt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-openclaw.sh
# prometheus-node-exporter, the truth the host metrics are compared with.
bash scripts/setup-host.sh
bash scripts/setup-otel.sh
# systemd-analyze, for the unit in deploy/systemd (tests/deploy.rs).
bash scripts/setup-systemd.sh
cargo build --locked --bins
# promtool and a Prometheus server for tests/metrics.rs (Debian's `prometheus` package).
bash scripts/setup-prometheus.sh
# Arize Phoenix: the real OTLP destination of tests/otlp_export.rs.
bash scripts/setup-phoenix.sh
cargo test --locked --all-targets --no-fail-fast -- --test-threads=2
