#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer) on the nightly toolchain; not part of the test
# command, which replays the committed corpus on stable instead (tests/fuzz_corpus.rs).
#
#   bash scripts/fuzz.sh build                 # build every target
#   bash scripts/fuzz.sh run SECONDS [TARGET..] # fuzz each target for SECONDS (default: all)
#   bash scripts/fuzz.sh check                 # each target once over its corpus (-runs=0)
#
# New inputs that widen coverage land in fuzz/work/<target>/ (not committed; to keep some,
# minimise them into the corpus:
# `cargo +nightly fuzz cmin <target>`); a crash lands in fuzz/artifacts/<target>/: copy it
# to fuzz/regressions/<target>/ once fixed, so tests/fuzz_corpus.rs replays it for good.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
# No sanitizer: the targets are safe Rust (panics, hangs and memory blow-ups are what
# is looked for); debug assertions on, so integer overflow is found too.
FLAGS=(-s none -a)
TARGETS=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v openclaw-trace-fuzz)
cmd=${1:-check}
shift || true
case "$cmd" in
  build)
    cd fuzz && cargo +nightly fuzz build "${FLAGS[@]}"
    ;;
  run)
    secs=${1:-60}
    shift || true
    list=${*:-$TARGETS}
    for t in $list; do
      echo "== $t for ${secs}s"
      mkdir -p "fuzz/work/$t"
      mkdir -p fuzz/artifacts
      log="fuzz/artifacts/run-$t.log"
      rc=0
      (cd fuzz && cargo +nightly fuzz run "${FLAGS[@]}" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 -max_len=65536 \
        -print_final_stats=1) >"$log" 2>&1 || rc=$?
      grep -E 'stat::number_of_executed_units|stat::new_units_added|panicked|SUMMARY|Test unit written' "$log" || true
      echo "exit $rc (log: $log)"
    done
    ;;
  check)
    for t in $TARGETS; do
      (cd fuzz && cargo +nightly fuzz run "${FLAGS[@]}" "$t" "corpus/$t" -- -runs=0)
    done
    ;;
  *)
    echo "usage: $0 build | run SECONDS [TARGET..] | check" >&2
    exit 2
    ;;
esac
