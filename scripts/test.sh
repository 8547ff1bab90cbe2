#!/usr/bin/env bash
# The one command that runs every test. Installs nothing system-wide: tools that
# later suites need (Python venvs, npm packages) are set up under .cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-otel.sh
cargo build --locked --bins
cargo test --locked --all-targets -- --test-threads=2
