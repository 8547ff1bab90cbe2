#!/usr/bin/env bash
# Host health cost: what sampling every 15 s costs in CPU (over COST_SECS,
# default 5 minutes) against the same daemon with host health off, and how RSS
# moves over RSS_SECS (default 30 minutes). Also the metric rows one sample
# writes and what a day of them weighs in the database.
#   bash bench/host.sh                 # full run (30 minutes)
#   COST_SECS=60 RSS_SECS=120 bash bench/host.sh   # quick look
set -euo pipefail
cd "$(dirname "$0")/.."
COST_SECS=${COST_SECS:-300}
RSS_SECS=${RSS_SECS:-1800}
INTERVAL=${INTERVAL:-15s}
WARMUP=${WARMUP:-20}
cargo build --release --locked --bin openclaw-trace >/dev/null 2>&1
BIN=$PWD/target/release/openclaw-trace
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A stand-in agent for the watcher to follow.
sleep 100000 >/dev/null 2>&1 &
AGENT=$!
PIDS+=("$AGENT")
echo "$AGENT" >"$WORK/agent.pid"

STARTED=""
start() { # name, then extra VAR=value settings; sets STARTED to the pid
  local dir="$WORK/$1"; shift
  mkdir -p "$dir"
  env -i PATH="$PATH" HOME="$dir" OCT_PORT=0 OCT_DB_PATH="$dir/t.db" OCT_LOG_FORMAT=json "$@" \
    "$BIN" >/dev/null 2>"$dir/log" &
  STARTED=$!
  PIDS+=("$STARTED")
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# VmRSS split: anonymous (heap, SQLite's page caches), file-backed, shared (the WAL index).
rss_parts() { awk '/^Rss(Anon|File|Shmem)/ { printf "%s %s KiB  ", $1, $2 } END { print "" }' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

start on OCT_METRICS_INTERVAL="$INTERVAL" OCT_AGENT_PID_FILE="$WORK/agent.pid"
ON=$STARTED
start off OCT_METRICS_INTERVAL=0 OCT_HOST_DISABLE=all
OFF=$STARTED
sleep "$WARMUP"
on0=$(ticks "$ON"); off0=$(ticks "$OFF"); t0=$(date +%s.%N)
rss0=$(rss_kb "$ON"); rss_max=$rss0
echo "rss at ${WARMUP}s: $(rss_parts "$ON")"
sleep "$COST_SECS"
on1=$(ticks "$ON"); off1=$(ticks "$OFF"); t1=$(date +%s.%N)
kill "$OFF"
awk -v a="$on0" -v b="$on1" -v c="$off0" -v d="$off1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v iv="$INTERVAL" 'BEGIN {
  wall = t1 - t0; on = (b - a) / hz; off = (d - c) / hz;
  printf "cpu over %.0f s at %s: host health on %.3f s (%.3f%% of a core), off %.3f s (%.3f%%); sampling itself %.3f%% of a core\n",
    wall, iv, on, 100 * on / wall, off, 100 * off / wall, 100 * (on - off) / wall }'

elapsed=$COST_SECS
while [ "$elapsed" -lt "$RSS_SECS" ]; do
  step=60; [ $((RSS_SECS - elapsed)) -lt 60 ] && step=$((RSS_SECS - elapsed))
  sleep "$step"; elapsed=$((elapsed + step))
  r=$(rss_kb "$ON"); [ "$r" -gt "$rss_max" ] && rss_max=$r
  echo "  t=${elapsed}s rss ${r} KiB"
done
rss1=$(rss_kb "$ON")
echo "rss at end: $(rss_parts "$ON")"
echo "rss over $((RSS_SECS)) s: start ${rss0} KiB, end ${rss1} KiB, max ${rss_max} KiB, drift $((rss1 - rss0)) KiB"
DB="$WORK/on/t.db"
kill -TERM "$ON"; while kill -0 "$ON" 2>/dev/null; do sleep 0.2; done
command -v sqlite3 >/dev/null || { echo "storage: sqlite3 not installed, skipped"; exit 0; }
# Raw points: rows per sample and their weight (table and both indexes).
samples=$(sqlite3 "$DB" "SELECT count(DISTINCT time_ns) FROM metric_points WHERE name = 'system.memory.limit'")
rows=$(sqlite3 "$DB" "SELECT count(*) FROM metric_points")
pages=$(sqlite3 "$DB" "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'metric_points%'")
# Rollups: the same points rolled up at once (a copy, raw window 1 s), then weighed.
mkdir -p "$WORK/roll"; cp "$DB" "$WORK/roll/t.db"
until_ns=$(sqlite3 "$DB" "SELECT max(time_ns) FROM metric_points")
start roll OCT_METRICS_INTERVAL="$INTERVAL" OCT_METRICS_RAW_RETENTION=1s OCT_HOST_DISABLE=dns
ROLL=$STARTED
for _ in $(seq 1 120); do
  left=$(sqlite3 "$WORK/roll/t.db" "SELECT count(*) FROM metric_points WHERE source = 'host' AND time_ns < $until_ns - 300000000000" 2>/dev/null || echo 1)
  [ "$left" = 0 ] && break
  sleep 1
done
kill -TERM "$ROLL"; while kill -0 "$ROLL" 2>/dev/null; do sleep 0.2; done
rsteps=$(sqlite3 "$WORK/roll/t.db" "SELECT count(DISTINCT bucket_ns) FROM metric_rollups WHERE name = 'system.memory.limit'")
rrows=$(sqlite3 "$WORK/roll/t.db" "SELECT count(*) FROM metric_rollups")
rpages=$(sqlite3 "$WORK/roll/t.db" "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'metric_rollups%'")
awk -v s="$samples" -v r="$rows" -v b="$pages" -v iv="${INTERVAL%s}" -v rs="$rsteps" -v rr="$rrows" -v rb="$rpages" 'BEGIN {
  per = r / s; row = b / r; raw_day = row * per * 86400 / iv / 1048576;
  printf "raw points: %d samples, %.1f rows per sample, %.0f bytes per row with indexes: %.1f MiB per day if kept raw (%.1f MiB for the default 2 h raw window)\n", s, per, row, raw_day, raw_day / 12;
  if (rs > 0 && rr > 0) {
    rper = rr / rs; rrow = rb / rr; rday = rrow * rper * 288 / 1048576;
    printf "rollups: %d steps of 5 min, %.1f rows per step, %.0f bytes per row: %.1f MiB per day\n", rs, rper, rrow, rday;
    printf "host metrics at defaults: %.1f MiB the first day (2 h raw + rollups), then %.1f MiB per day\n", raw_day / 12 + rday, rday;
  } else print "rollups: none made (run longer than 10 minutes)" }'
