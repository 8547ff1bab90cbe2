#!/usr/bin/env bash
# Fleet benchmark, whole central (issue #21): the release binary as a fleet's central on
# a private PostgreSQL server (OCT_DATABASE_URL), SIDECARS simulated sidecars pushing
# SPANS spans in v2 batches of BATCH over HTTP (bench/central_push.py). Prints committed
# spans/s (first push to the last span in PostgreSQL, counted with psql), a raw binary
# COPY of the same rows into an unindexed table in the same run and the ratio, the
# central's RSS (idle, peak), query p95 of the runs list and one run through the API,
# and the CPU stolen by the hypervisor.
# PG_STATS=1 prints PostgreSQL's time by statement. UPDATES=0.25 sends a quarter of the
# spans again as updates (the merge path), the spans/s then counting the first copies.
# Usage: SPANS=200000 SIDECARS=50 BATCH=200 bash bench/central.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SPANS=${SPANS:-200000}
SIDECARS=${SIDECARS:-50}
BATCH=${BATCH:-200}
# The central's queue and in-flight budget, as the figures in BENCHMARKS.md were taken
# (QUEUE, INFLIGHT); DEFAULTS=1 leaves the central's own defaults (since session 18 a
# central's: 50000 records, 64MiB queued, 32MiB in flight, 10000 a transaction).
QUEUE=${QUEUE:-100000}
INFLIGHT=${INFLIGHT:-64MiB}
CENTRAL_ENV="OCT_QUEUE_CAPACITY=$QUEUE OCT_QUEUE_MAX_BYTES=256MiB OCT_MAX_INFLIGHT_BYTES=$INFLIGHT"
if [ "${DEFAULTS:-0}" = 1 ]; then
  CENTRAL_ENV=""
fi
# PG_STATS=1: PostgreSQL's time by statement during the pushes (pg_stat_statements).
if [ "${PG_STATS:-0}" = 1 ]; then
  export PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
fi
source bench/central_lib.sh
rss() { awk -v k="$1:" '$1==k{print $2}' "/proc/$central/status"; }
steal() { awk '/^cpu /{print $9+0, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
# CPU seconds used so far by the central, and by the PostgreSQL server's processes.
cpu_of() { for p in "$@"; do awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null; done | awk -v hz="$(getconf CLK_TCK)" '{s+=$1} END {printf "%.1f", s/hz}'; }
pg_pids() { pgrep -f "$dir/pg/data" ; pgrep -P "$(pgrep -f "postgres -D $dir/pg/data" | head -1)" 2>/dev/null || true; }
echo "# $SPANS spans from $SIDECARS sidecars in batches of $BATCH; central settings: ${CENTRAL_ENV:-its defaults}"
sleep 2
echo "central_idle_rss_kib: $(rss VmRSS)"
read -r s0 t0 < <(steal)
c0=$(cpu_of "$central"); p0=$(cpu_of $(pg_pids | sort -u))
# PERF_SECONDS: perf samples the central's call graphs for that long from the first push
# (report in perf.report.txt; best with PROFILE=profiling).
if [ -n "${PERF_SECONDS:-}" ]; then
  perf record -F 199 --call-graph dwarf,16384 -p "$central" -o perf.data -- sleep "$PERF_SECONDS" 2>/dev/null &
  perf_pid=$!
fi
python3 bench/central_push.py "http://127.0.0.1:$port" "$TOKEN" "$SPANS" "$SIDECARS" "$BATCH" "${UPDATES:-0}" | tee "$dir/push.out"
started=$(awk '/^push_started_at:/{print $2}' "$dir/push.out")
sent=$(awk '/^spans_sent:/{print $2}' "$dir/push.out")
updates=$(awk '/^updates_sent:/{print $2}' "$dir/push.out")
while [ "$(psql "$url" -XtAc 'SELECT count(*) FROM spans')" -lt "$sent" ]; do sleep 0.1; done
# Sent again as updates: merged when their row has the response model the update added.
while [ "$(psql "$url" -XtAc 'SELECT count(*) FROM spans WHERE response_model IS NOT NULL')" -lt "$updates" ]; do sleep 0.1; done
done_at=$(date +%s.%N)
read -r s1 t1 < <(steal)
c1=$(cpu_of "$central"); p1=$(cpu_of $(pg_pids | sort -u))
echo "central_cpu_s: $(python3 -c "print(round($c1 - $c0, 1))")  postgresql_cpu_s: $(python3 -c "print(round($p1 - $p0, 1))") (children that ended are not counted)"
echo "central_peak_rss_kib: $(rss VmHWM)"
echo "central_rss_after_kib: $(rss VmRSS)"
central_rate=$(python3 -c "print(round($sent / ($done_at - $started)))")
echo "central_committed_spans_per_s: $central_rate"
if [ "$updates" -gt 0 ]; then
  echo "updates_merged: $updates (spans stored: $(psql "$url" -XtAc 'SELECT count(*) FROM spans'); runs' span_count sum: $(psql "$url" -XtAc 'SELECT sum(span_count) FROM traces'))"
fi
if [ -n "${PERF_SECONDS:-}" ]; then
  wait "$perf_pid" || true
  perf report -i perf.data --children --percent-limit 1.5 --stdio -g none 2>/dev/null | grep -v '^$' | head -150 > perf.report.txt
  echo "perf: perf.report.txt"
fi
if [ "${PG_STATS:-0}" = 1 ]; then
  psql "$url" -XqAc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  echo "# PostgreSQL's time by statement (ms in all, calls, rows):"
  psql "$url" -XtAF ' | ' -c "SELECT round(total_exec_time)::bigint, calls, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 14"
fi
echo "steal_pct: $(( (s1 - s0) * 100 / ( (t1 - t0) > 0 ? (t1 - t0) : 1 ) ))"
# The same rows, by raw binary COPY into a table without indexes or partitions.
psql "$url" -XqAc "\\copy (SELECT * FROM spans) TO '$dir/spans.bin' WITH (FORMAT binary)"
psql "$url" -XqAc "CREATE TABLE raw_spans (LIKE spans)"
t_a=$(date +%s.%N)
psql "$url" -XqAc "\\copy raw_spans FROM '$dir/spans.bin' WITH (FORMAT binary)"
t_b=$(date +%s.%N)
raw_rate=$(python3 -c "print(round($sent / ($t_b - $t_a)))")
echo "raw_copy_spans_per_s: $raw_rate"
echo "ratio: $(python3 -c "print(round($central_rate / $raw_rate, 2))")"
python3 - "$port" "$TOKEN" <<'EOF'
import http.client, json, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def get(path):
    t = time.perf_counter()
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse(); body = r.read()
    assert r.status == 200, (path, r.status, body[:200])
    return (time.perf_counter() - t) * 1000, json.loads(body)
_, page = get("/v1/traces?limit=50")
ids = [t["trace_id"] for t in page["traces"]]
for name, paths in [("runs_list", ["/v1/traces?limit=50"]),
                    ("runs_list_by_instance", ["/v1/traces?limit=50&instance=side-07"]),
                    ("one_run", [f"/v1/traces/{i}" for i in ids])]:
    ms = sorted(get(paths[k % len(paths)])[0] for k in range(100))
    print(f"{name}_p50_ms: {ms[49]:.2f}  p95_ms: {ms[94]:.2f}")
EOF
