#!/usr/bin/env bash
# Dashboard speed on a database of 1,000,000 spans (30 days of agent runs, sessions,
# models, a 2,000-span run): p50/p95/max of the API calls behind each dashboard view,
# against the release binary. The database is built once through the store's writer
# and kept at $DB (default /tmp/oct-dashboard-bench.db) for later runs; delete it
# (and its .bench.json) to rebuild. Extra arguments go to the example
# (--spans N, --runs N requests per call).
set -euo pipefail
cd "$(dirname "$0")/.."
DB="${DB:-/tmp/oct-dashboard-bench.db}"
cargo build --release --locked --bins
cargo build --release --locked --example dashboard_bench
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/dashboard_bench target/release/openclaw-trace --db "$DB" "$@"
