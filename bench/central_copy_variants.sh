#!/usr/bin/env bash
# Where a COPY of the central's span rows spends its time (issue #21): SPANS spans pushed
# to a central (bench/central.sh's load), then copied again by psql from a binary file
# into variants of the spans table (no index, each index, both, the id from a sequence,
# partitioned as `spans` is), twice each; prints microseconds a span for each.
# Usage: SPANS=200000 bash bench/central_copy_variants.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SPANS=${SPANS:-200000}
source bench/central_lib.sh
python3 bench/central_push.py "http://127.0.0.1:$port" "$TOKEN" "$SPANS" 50 200 0 > /dev/null
while [ "$(psql "$url" -XtAc 'SELECT count(*) FROM spans')" -lt "$SPANS" ]; do sleep 0.2; done
kill "$central"; wait "$central" 2>/dev/null || true; central=""
cols=$(psql "$url" -XtAc "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'spans' AND column_name <> 'id'")
psql "$url" -XqAc "\\copy (SELECT * FROM spans) TO '$dir/with_id.bin' WITH (FORMAT binary)"
psql "$url" -XqAc "\\copy (SELECT $cols FROM spans) TO '$dir/no_id.bin' WITH (FORMAT binary)"
t() { # name, setup sql, copy target, file
  psql "$url" -XqAc "DROP TABLE IF EXISTS x CASCADE" ; psql "$url" -Xq -c "$2"
  psql "$url" -XqAc "CHECKPOINT"
  local a b; a=$(date +%s.%N)
  psql "$url" -XqAc "\\copy $3 FROM '$dir/$4' WITH (FORMAT binary)"
  b=$(date +%s.%N)
  echo "$1: $(python3 -c "print(round(($b - $a) * 1e6 / $SPANS, 1))") us/span"
}
for round in 1 2; do
t "plain (raw)" "CREATE TABLE x (LIKE spans)" x with_id.bin
t "plain + identity index" "CREATE TABLE x (LIKE spans); CREATE UNIQUE INDEX ON x (trace_id, span_id, start_ns)" x with_id.bin
t "plain + start index" "CREATE TABLE x (LIKE spans); CREATE INDEX ON x (start_ns)" x with_id.bin
t "plain + both" "CREATE TABLE x (LIKE spans); CREATE UNIQUE INDEX ON x (trace_id, span_id, start_ns); CREATE INDEX ON x (start_ns)" x with_id.bin
t "plain + both, id from a sequence" "CREATE TABLE x (LIKE spans); CREATE SEQUENCE IF NOT EXISTS x_seq; ALTER TABLE x ALTER id SET DEFAULT nextval('x_seq'); CREATE UNIQUE INDEX ON x (trace_id, span_id, start_ns); CREATE INDEX ON x (start_ns)" "x ($cols)" no_id.bin
t "partitioned + both + sequence (as spans)" "CREATE TABLE x (LIKE spans INCLUDING DEFAULTS) PARTITION BY RANGE (start_ns); CREATE TABLE x_d PARTITION OF x DEFAULT; CREATE UNIQUE INDEX ON x (trace_id, span_id, start_ns); CREATE INDEX ON x (start_ns)" "x ($cols)" no_id.bin
done
