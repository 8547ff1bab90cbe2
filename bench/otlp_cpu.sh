#!/usr/bin/env bash
# CPU per span, per daemon thread, under the OTLP load of bench/otlp.sh (4 connections,
# 100 GenAI spans per request): thread ticks from /proc/<pid>/task/*/stat before and after
# the load, divided by the spans that landed. CPU per span does not depend much on other
# jobs sharing the machine, unlike spans/s, so two builds can be compared side by side.
#
#   bash bench/otlp_cpu.sh target/profiling/openclaw-trace        # figures
#   bash bench/otlp_cpu.sh target/profiling/openclaw-trace perf   # and perf.data in bench/out/otlp
#
# Needs target/release/examples/otlp_load (cargo build --release --example otlp_load).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1; PERF=${2:-}
SECS=${LOAD_SECONDS:-15}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
OCT_PORT=$port OCT_DB_PATH="$dir/trace.db" OCT_OTLP_HTTP_ADDR=off OCT_OTLP_GRPC_ADDR=off \
  OCT_CLEANUP_DB_THRESHOLD_BYTES=16GiB OCT_LOG_FORMAT=json $BIN > "$dir/daemon.log" 2>&1 &
oct=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
snap() { for t in /proc/$oct/task/*; do echo "$(basename "$t") $(tr " " _ < "$t/comm" 2>/dev/null || true) $(awk "{print \$14+\$15}" "$t/stat" 2>/dev/null || true)"; done; }
snap > $dir/before
if [[ -n "$PERF" ]]; then mkdir -p bench/out/otlp; perf record -F 499 -g --call-graph dwarf,8192 -p $oct -o bench/out/otlp/perf.data 2>/dev/null & perfpid=$!; fi
load=$(target/release/examples/otlp_load --url "http://127.0.0.1:$port/v1/traces" --connections 4 --seconds $SECS --spans 100)
# wait for the writer to drain
last=-1
for _ in $(seq 120); do
  n=$(python3 -c "import sqlite3;print(sqlite3.connect('file:$dir/trace.db?mode=ro',uri=True,timeout=10).execute('select count(*) from spans').fetchone()[0])")
  [[ "$n" == "$last" ]] && break; last=$n; sleep 1
done
snap > $dir/after
if [[ -n "$PERF" ]]; then kill -INT $perfpid; wait $perfpid || true; fi
echo "load: $load"
echo "landed: $n"
python3 - $dir/before $dir/after $n <<'PY'
import sys, collections, os
hz = os.sysconf('SC_CLK_TCK')
rows = lambda f: [l.split() for l in open(f) if len(l.split()) == 3]
b = {r[0]: (r[1], int(r[2])) for r in rows(sys.argv[1])}
a = {r[0]: (r[1], int(r[2])) for r in rows(sys.argv[2])}
n = int(sys.argv[3])
per = collections.Counter()
for tid,(comm,t) in a.items():
    per[comm] += t - b.get(tid,(comm,0))[1]
tot = sum(per.values())
for comm, t in per.most_common():
    if t: print(f"{comm:20s} {t/hz:7.2f}s  {t/hz*1e6/n:6.2f} us/span")
print(f"{'TOTAL':20s} {tot/hz:7.2f}s  {tot/hz*1e6/n:6.2f} us/span")
PY
kill -TERM $oct; wait $oct 2>/dev/null || true
rm -rf "$dir"
