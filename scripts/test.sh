#!/usr/bin/env bash
# The one command that runs every test. Tools that later suites need (Python
# venvs, npm packages) are set up under .cache/; Debian packages the tests compare
# against (prometheus-node-exporter) are installed by scripts/setup-host.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
cargo build --locked --bins
cargo test --locked --all-targets -- --test-threads=2
