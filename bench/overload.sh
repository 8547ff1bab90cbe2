#!/usr/bin/env bash
# Overload benchmark (#18): peak RSS (VmHWM), answers by status and committed records under
# 16, 256 and 1,000 concurrent connections posting 100-event native batches and OTLP/HTTP
# JSON exports, and OTLP/gRPC clients (one HTTP/2 connection each, 100-span exports back
# to back: bench/grpc_load.py), with the default settings. Needs wrk (Debian package
# `wrk`) and, for gRPC, scripts/setup-otel.sh's Python venv (grpcio, opentelemetry-proto).
# Usage: bash bench/overload.sh [duration, default 15s] ; BIN=path to skip the release build;
# KINDS="native otlp grpc" (the default) to run some legs only.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-15s}
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin openclaw-trace
  BIN=target/release/openclaw-trace
fi
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

steal_jiffies() { awk '/^cpu / {print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
steal_since() {
  local s0 t0 s1 t1
  read -r s0 t0 <<< "$1"; read -r s1 t1 < <(steal_jiffies)
  awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.0f", (t > 0 ? 100 * s / t : 0)}'
}

python3 - "$work" <<'PY'
import json, sys
d = sys.argv[1]
ev = [{"type": "tool_call", "name": f"t{i}", "input": {"q": "x" * 100}} for i in range(100)]
open(f"{d}/native.json", "w").write(json.dumps(ev))
# TRACEPFX is replaced per request (post.lua), so every export's spans are new records.
spans = [{"traceId": "TRACEPFX%024x" % (i + 1), "spanId": "%016x" % (i + 1), "name": f"s{i}",
          "kind": 1, "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
          "attributes": [{"key": "q", "value": {"stringValue": "x" * 100}}]} for i in range(100)]
otlp = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bench"}}]},
        "scopeSpans": [{"scope": {"name": "b"}, "spans": spans}]}]}
open(f"{d}/otlp.json", "w").write(json.dumps(otlp))
PY
cat > "$work/post.lua" <<'LUA'
local f = io.open(os.getenv("BODY_FILE"), "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local varies = body:find("TRACEPFX", 1, true) ~= nil
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  if not varies then return wrk.format() end
  local pfx = string.format("%08x", math.random(1, 0x7fffffff))
  return wrk.format(nil, nil, nil, (body:gsub("TRACEPFX", pfx)))
end
local counts = {}
response = function(status, headers, b)
  local k = tostring(status)
  if status ~= 202 and status ~= 200 and headers["Retry-After"] == nil then k = k .. "-no-retry-after" end
  counts[k] = (counts[k] or 0) + 1
end
done = function(summary, latency, requests)
  -- per-thread counts are not shared back; wrk prints non-2xx totals and socket errors.
end
LUA

echo "# commit $(git rev-parse --short HEAD), $(nproc) CPUs, duration $DUR per run, defaults"
printf "%-8s %6s %10s %10s %10s %12s %10s %s\n" kind conns requests non2xx sockerr committed peakMB steal%
KINDS=${KINDS:-native otlp grpc}
PY=python3
if [[ " $KINDS " == *" grpc "* ]]; then
  bash scripts/setup-otel.sh >/dev/null
  PY=.cache/venv-otel/bin/python
fi
grpc_codes=""
for kind in $KINDS; do
  for c in 16 256 1000; do
    rm -f "$work/db"*
    port=$((20000 + RANDOM % 20000))
    gport=$((port + 1))
    grpc_addr=off; [ $kind = grpc ] && grpc_addr=127.0.0.1:$gport
    OCT_DB_PATH="$work/db" OCT_PORT=$port OCT_OTLP_HTTP_ADDR=off OCT_OTLP_GRPC_ADDR=$grpc_addr \
      OCT_HOST_METRICS=false "$BIN" > "$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
    path=/v1/events; [ $kind = otlp ] && path=/v1/traces
    s0=$(steal_jiffies)
    if [ $kind = grpc ]; then
      codes=$("$PY" bench/grpc_load.py "$gport" "$c" "${DUR%s}" 2>"$work/grpc.err" || tail -3 "$work/grpc.err")
      grpc_codes="$grpc_codes$c: $codes"$'\n'
      read -r reqs non2xx < <(echo "$codes" | "$PY" -c 'import json,sys
c=json.load(sys.stdin); print(sum(c.values()), sum(v for k, v in c.items() if k != "OK"))' || echo "0 0")
      sockerr=$(echo "$codes" | "$PY" -c 'import json,sys
c=json.load(sys.stdin); print(",".join(f"{k}={v}" for k, v in sorted(c.items()) if k != "OK") or "none")' || echo "?")
    else
      out=$(BODY_FILE="$work/$kind.json" wrk -t2 -c"$c" -d"$DUR" --timeout 10s -s "$work/post.lua" \
        "http://127.0.0.1:$port$path" 2>&1 || true)
      reqs=$(echo "$out" | awk '/requests in/ {print $1}')
      non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
      sockerr=$(echo "$out" | awk '/Socket errors/ {print $0}' | sed 's/.*errors: //')
    fi
    steal=$(steal_since "$s0")
    sleep 2
    hwm=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
    committed=$(curl -s "http://127.0.0.1:$port/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_written"])')
    printf "%-8s %6s %10s %10s %10s %12s %10s %s\n" "$kind" "$c" "${reqs:-0}" "${non2xx:-0}" "${sockerr:-none}" "$committed" "$hwm" "$steal"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
[ -n "$grpc_codes" ] && printf "gRPC calls by status code, per client count:\n%s" "$grpc_codes"
