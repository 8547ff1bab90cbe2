#!/usr/bin/env bash
# Host samples under a native flood (#18): with host metrics every second, wrk floods
# /v1/events with 100-event batches; prints records dropped by source and how many host
# samples were taken during the flood. Usage: bash bench/host_share.sh [duration, default 30s]
# (needs wrk and the sqlite3 shell; BIN=path, default target/release/openclaw-trace).
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/openclaw-trace}
w=$(mktemp -d)
python3 - "$w" <<'PY'
import json, sys
ev = [{"type": "tool_call", "name": f"t{i}", "input": {"q": "x" * 100}} for i in range(100)]
open(f"{sys.argv[1]}/native.json", "w").write(json.dumps(ev))
PY
cat > $w/post.lua <<'LUA'
local f = io.open(os.getenv("BODY_FILE"), "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body
wrk.headers["Content-Type"] = "application/json"
LUA
port=$((20000 + RANDOM % 20000))
OCT_CLEANUP_DB_THRESHOLD_BYTES=100000000000 OCT_CLEANUP_DISK_THRESHOLD=100 \
  OCT_AUDIT=off OCT_DB_PATH=$w/db OCT_PORT=$port OCT_OTLP_HTTP_ADDR=off OCT_OTLP_GRPC_ADDR=off OCT_METRICS_INTERVAL=1s \
  OCT_LOG_PATH=off OCT_OPENCLAW_STATE_DIR=off $BIN > $w/log 2>&1 &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
sleep 3
t0=$(date +%s%N)
BODY_FILE=$w/native.json wrk -t2 -c256 -d${1:-30s} -s $w/post.lua "http://127.0.0.1:$port/v1/events" | grep -E 'Requests/sec|Non-2xx|Socket'
t1=$(date +%s%N)
sleep 3
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^openclaw_trace_records_(dropped|received)' | head -20
kill -TERM $pid; wait $pid
sqlite3 $w/db "SELECT count(DISTINCT time_ns) FROM metric_points WHERE time_ns BETWEEN $t0 AND $t1" | sed 's/^/distinct host sample times during the flood: /'
echo "flood seconds: $(( (t1 - t0) / 1000000000 ))"
[ -n "${KEEP:-}" ] && echo "kept $w" || rm -rf $w
