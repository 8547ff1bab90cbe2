#!/usr/bin/env bash
# The one command that runs every test. Installs nothing system-wide: tools that
# later suites need (Python venvs, npm packages) are set up under .cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --bins
# Arize Phoenix: the real OTLP destination of tests/otlp_export.rs.
bash scripts/setup-phoenix.sh
cargo test --locked --all-targets -- --test-threads=2
