#!/usr/bin/env bash
# Bytes per span at the size cap (issue #20). For each binary (the old one built from
# $OLD when given, then this tree's) and each load, fills a fresh database past the cap
# (OCT_CLEANUP_DB_THRESHOLD_BYTES=$CAP, so retention runs as it does on a full volume;
# the volume threshold is off, so a busy build disk does not empty the database),
# then prints: spans kept, bytes per span (database plus WAL after a checkpoint, indexes
# and every other table included, divided by the spans kept), records written per second
# during the load, and the query API's p95 for the runs list, one run and usage on the
# full database.
#
# Loads:
#   otlp      the bench/otlp.sh load: OTLP/HTTP protobuf GenAI spans (about 400 bytes of
#             attributes, 200-character texts, the same texts in every span)
#   openclaw  a real OpenClaw 2026.9.6 turn with a tool call (plugin events from
#             ../shared/samples/openclaw/), replayed with fresh ids and a distinct prompt,
#             tool result and answer in every turn (bench/openclaw_load.py)
#
#   bash bench/density.sh                        # this tree only
#   OLD=be98f82 bash bench/density.sh            # the old build first, same run
#   OLD_BIN=/path/to/openclaw-trace bash bench/density.sh
#   CAP=50MiB LOADS=openclaw bash bench/density.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CAP=${CAP:-100MiB}
LOADS=${LOADS:-otlp openclaw}
OTLP_SECONDS=${OTLP_SECONDS:-60}
OPENCLAW_TURNS=${OPENCLAW_TURNS:-30000}
QUERIES=${QUERIES:-60}
out=bench/out/density
mkdir -p "$out"

cargo build --release --bin openclaw-trace --example otlp_load
NEW_BIN=target/release/openclaw-trace
LOAD=target/release/examples/otlp_load

OLD_BIN=${OLD_BIN:-}
if [[ -z "$OLD_BIN" && -n "${OLD:-}" ]]; then
  old_dir=.cache/density-old
  rm -rf "$old_dir"
  git worktree prune
  git worktree add --detach "$old_dir" "$OLD" >/dev/null
  # The old tree reads ../shared like this one.
  (cd "$old_dir" && CARGO_TARGET_DIR="$PWD/../density-old-target" cargo build --release --bin openclaw-trace)
  OLD_BIN=.cache/density-old-target/release/openclaw-trace
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

steal_jiffies() { awk '/^cpu / {print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
steal_since() {
  local s0 t0 s1 t1
  read -r s0 t0 <<< "$1"; read -r s1 t1 < <(steal_jiffies)
  awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.0f", (t > 0 ? 100 * s / t : 0)}'
}

start_daemon() { # bin dir port
  OCT_PORT=$3 OCT_DB_PATH="$2/trace.db" OCT_OTLP_HTTP_ADDR=off OCT_OTLP_GRPC_ADDR=off \
    OCT_CLEANUP_DB_THRESHOLD_BYTES=$CAP OCT_CLEANUP_DISK_THRESHOLD=100 OCT_CLEANUP_INTERVAL=30s OCT_RETENTION_DAYS=0 \
    OCT_LOG_PATH=off OCT_OPENCLAW_STATE_DIR=off OCT_LOG_FORMAT=json \
    "$1" >> "$2/daemon.log" 2>&1 &
  echo $!
}

wait_ready() { # port
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/ready" >/dev/null && return 0; sleep 0.1; done
  echo "daemon not ready" >&2; return 1
}

written() { # port -> records written so far
  curl -sf "http://127.0.0.1:$1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_written"])'
}

# Waits until records written stop changing for 5 s; prints "written seconds_since_start".
wait_settled() { # port start_epoch
  local last=-1 n now last_change stable
  last_change=$(date +%s.%N); stable=$last_change
  while true; do
    n=$(written "$1")
    now=$(date +%s.%N)
    if [[ "$n" != "$last" ]]; then last=$n; last_change=$now; stable=$now
    elif awk -v a="$now" -v b="$stable" 'BEGIN {exit !(a - b > 5)}'; then break; fi
    sleep 0.3
  done
  echo "$last $(awk -v a="$last_change" -v b="$2" 'BEGIN {printf "%.3f", a - b}')"
}

measure() { # name bin load
  local name=$1 bin=$2 load=$3 dir port pid steal0 start n secs
  dir=$(mktemp -d)
  port=$(free_port)
  pid=$(start_daemon "$bin" "$dir" "$port")
  wait_ready "$port"
  steal0=$(steal_jiffies)
  start=$(date +%s.%N)
  case $load in
    otlp) "$LOAD" --url "http://127.0.0.1:$port/v1/traces" --connections 4 --seconds "$OTLP_SECONDS" --spans 100 > "$dir/load.json" ;;
    openclaw) python3 bench/openclaw_load.py --url "http://127.0.0.1:$port" --turns "$OPENCLAW_TURNS" --connections 4 --retry-wait 0.2 > "$dir/load.json" ;;
  esac
  read -r n secs < <(wait_settled "$port" "$start")
  local steal commit_secs
  steal=$(steal_since "$steal0")
  # The writer's own time in commits: records per commit-second do not move with the
  # client's pacing (retry waits, a queue that ran dry), only with the writer's work.
  commit_secs=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^openclaw_trace_batch_write_seconds_total /{print $2}')
  # Retention runs at its pace too: one more cycle so the database is at the cap.
  sleep 2
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$dir/trace.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()
PY
  # Queries on the full database, the daemon restarted on it.
  pid=$(start_daemon "$bin" "$dir" "$port")
  wait_ready "$port"
  python3 - "$name" "$load" "$dir/trace.db" "$port" "$n" "$secs" "$steal" "$QUERIES" "$dir/load.json" "${commit_secs:-0}" <<'PY' | tee -a "$out/results.jsonl"
import http.client, json, os, sqlite3, sys, time
name, load, db, port, written, secs, steal, queries, load_file, commit_secs = sys.argv[1:11]
port, queries = int(port), int(queries)
c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
spans = c.execute("SELECT count(*) FROM spans").fetchone()[0]
traces = [r[0].hex() for r in c.execute(
    "SELECT trace_id FROM traces ORDER BY start_ns DESC LIMIT ?", (queries,))]
# Where the bytes go: each table and index of 5 B or more per span kept, largest first.
tables = {name: round(size / spans) for name, size in c.execute(
    "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC") if spans and size >= spans * 5}
# In a spans row: each column's stored bytes (packed values as stored), 3 B or more a span.
cols = [r[1] for r in c.execute("PRAGMA table_info(spans)")]
sums = c.execute("SELECT " + ", ".join(f"sum(length({col}))" for col in cols) + " FROM spans").fetchone()
columns = dict(sorted(((col, round((v or 0) / spans)) for col, v in zip(cols, sums)
                       if spans and (v or 0) >= spans * 3), key=lambda kv: -kv[1]))
c.close()
size = os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def p95(paths):
    times = []
    for p in paths:
        t = time.perf_counter()
        conn.request("GET", p)
        r = conn.getresponse(); r.read()
        assert r.status == 200, (p, r.status)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return round(times[max(0, int(len(times) * 0.95 + 0.5) - 1)], 1)
now_ms = int(time.time() * 1000)
print(json.dumps({
    "binary": name, "load": load, "cap": os.environ.get("CAP"),
    "spans_kept": spans, "db_bytes": size,
    "bytes_per_span": round(size / spans) if spans else None,
    "bytes_per_span_by_table": tables,
    "spans_row_bytes_by_column": columns,
    "records_written": int(written),
    "written_per_s": round(int(written) / float(secs)) if float(secs) > 0 else None,
    "written_per_commit_s": round(int(written) / float(commit_secs)) if float(commit_secs) > 0 else None,
    "steal_pct": int(steal),
    "p95_ms": {
        "runs_list": p95(["/v1/traces?limit=50"] * queries),
        "one_run": p95([f"/v1/traces/{t}" for t in traces] or ["/v1/traces?limit=1"]),
        "usage_24h": p95([f"/v1/usage?group_by=model&from={now_ms - 86400000}"] * queries),
    },
    "load_output": json.load(open(load_file)),
}))
PY
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

echo "# machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); cap $CAP; commit $(git rev-parse --short HEAD)"
for load in $LOADS; do
  [[ -n "$OLD_BIN" ]] && measure "old${OLD:+ ($OLD)}" "$OLD_BIN" "$load"
  measure "new ($(git rev-parse --short HEAD))" "$NEW_BIN" "$load"
done
