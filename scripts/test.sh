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
# PostgreSQL's server binaries: tests/postgres_store.rs starts private servers.
bash scripts/setup-postgres.sh
# Everything the tests run, built once up front. Not `cargo build --bins`: the test
# build enables the dev-dependencies' features, so that would build the graph twice.
cargo test --locked --all-targets --no-run
# promtool and a Prometheus server for tests/metrics.rs (Debian's `prometheus` package).
bash scripts/setup-prometheus.sh
# Arize Phoenix: the real OTLP destination of tests/otlp_export.rs.
bash scripts/setup-phoenix.sh
# libfaketime, for the dated suites below.
bash scripts/setup-clock.sh
# schemathesis, for the OpenAPI contract run of tests/openapi.rs.
bash scripts/setup-schemathesis.sh
# The sqlite3 shell: tests/audit.rs tampers with real databases through it.
bash scripts/setup-audit.sh
# musl libc and musl-gcc: tests/static_binary.rs runs the static binary in a musl root.
bash scripts/setup-musl.sh
# The suites side by side, each test in a process of its own (.config/nextest.toml): about
# half the wall time of `cargo test`, which runs one suite after another. Without
# cargo-nextest, cargo test runs the same tests.
run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast "$@"
  else
    cargo test --locked --no-fail-fast "$@" -- --test-threads=2
  fi
}
run_tests --all-targets
# The dashboard in Debian's chromium driven by playwright-core (tests/browser/).
bash scripts/setup-browser.sh
node --test tests/browser/*.test.mjs
# The suites whose data carries dates (recorded fixtures, usage and budget windows,
# retention), again on moved clocks: a year ahead, and the last seconds of a year
# (month, day and year all roll over while they run). A test that would fail on
# another day fails now. Only the test processes and the daemons they start see it.
DATED_SUITES=(--lib --test openclaw_sources --test retention --test usage --test budgets
  --test merge_usage --test baseline --test query --test doctor --test openclaw_views --test alerts_chat
  --test scores --test behaviour --test fleet)
next_year=$(( $(date -u +%Y) + 1 ))
moved=$(OCT_TEST_CLOCK=+365d bash scripts/with-clock.sh date -u +%Y)
if [ "$moved" != "$next_year" ]; then
  echo "with-clock.sh did not move the clock (got $moved, want $next_year)" >&2
  exit 1
fi
for clock in "+365d" "@${next_year}-12-31 23:59:50"; do
  echo "== dated suites with the clock at $clock"
  OCT_TEST_CLOCK="$clock" CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/scripts/with-clock.sh" \
    run_tests "${DATED_SUITES[@]}"
done
