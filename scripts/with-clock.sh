#!/usr/bin/env bash
# Runs a command (a test binary: cargo's target runner) on a moved clock, libfaketime's
# FAKETIME syntax in OCT_TEST_CLOCK: "+365d" (a year ahead), "@2027-12-31 23:59:50"
# (starts there and runs on). The suites that read dated data run this way from
# scripts/test.sh, so a test that would fail on another day fails now.
set -euo pipefail
: "${OCT_TEST_CLOCK:?set OCT_TEST_CLOCK}"
# Only the wall clock moves: timeouts and intervals keep their real length.
export FAKETIME_DONT_FAKE_MONOTONIC=1
exec faketime -f "$OCT_TEST_CLOCK" "$@"
