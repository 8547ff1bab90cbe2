#!/usr/bin/env bash
# Fleet benchmark, PostgreSQL side (issue #21): starts a private PostgreSQL server
# (scripts/pg-private.sh), then writes SPANS GenAI spans from 50 sidecars' resources
# through the store's write path (binary COPY into staging, insert into day partitions
# skipping what is stored) with WRITERS connections, against a raw binary COPY of the
# same rows into an unindexed table, in the same run. Prints spans/s for both, their
# ratio, the server's CPU steal during the run, and the size on disk per span.
# Usage: SPANS=1000000 WRITERS=4 BATCH=500 bash bench/fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SPANS=${SPANS:-500000}
WRITERS=${WRITERS:-4}
BATCH=${BATCH:-500}
bash scripts/setup-postgres.sh
cargo build --release --locked --example pg_store_bench
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'bash scripts/pg-private.sh stop "$dir/pg"; rm -rf "$dir"' EXIT
url=$(bash scripts/pg-private.sh start "$dir/pg" "$port")
steal() { awk '/^cpu /{print $9+0, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
read -r s0 t0 < <(steal)
echo "# machine: $(nproc) cores, $(head -1 /proc/loadavg | cut -d' ' -f1-3) load; commit $(git rev-parse --short HEAD); PostgreSQL $(psql "$url" -XtAc 'SHOW server_version')"
target/release/examples/pg_store_bench --url "$url" --spans "$SPANS" --writers "$WRITERS" --batch "$BATCH"
read -r s1 t1 < <(steal)
echo "steal_pct: $(( (s1 - s0) * 100 / ( (t1 - t0) > 0 ? (t1 - t0) : 1 ) ))"
psql "$url" -XtA -c "SELECT 'pg_bytes_per_span: ' || (sum(pg_total_relation_size(c.oid)) / (SELECT count(*) FROM spans))::bigint
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'spans'::regclass"
psql "$url" -XtA -c "SELECT 'raw_copy_bytes_per_span: ' || (pg_total_relation_size('raw_spans') / (SELECT count(*) FROM raw_spans))::bigint"
