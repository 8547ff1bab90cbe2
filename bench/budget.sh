#!/usr/bin/env bash
# How fast GET /v1/budget answers (it reads in-memory state, no database), and how
# fast LLM calls are ingested with the cost transform, rollups and budget hooks on.
# Usage: bash bench/budget.sh [path/to/openclaw-trace]   (default: target/debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/openclaw-trace}
[ -x "$BIN" ] || cargo build --bins
DIR=$(mktemp -d)
LOG="$DIR/log"
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
OCT_PORT=0 OCT_DB_PATH="$DIR/t.db" OCT_LOG_FORMAT=json \
  OCT_BUDGETS='agent:main/day=$100, global/month=50M tokens' "$BIN" 2>"$LOG" &
PID=$!
for _ in $(seq 1 200); do
  ADDR=$(grep -o '"addr":"[^"]*"' "$LOG" | head -1 | cut -d'"' -f4 || true)
  [ -n "$ADDR" ] && break
  sleep 0.05
done
[ -n "$ADDR" ] || { echo "daemon did not start" >&2; cat "$LOG" >&2; exit 1; }
URL="http://$ADDR"

# Ingest: 20 000 priced LLM calls in batches of 500.
python3 - "$DIR/batch.json" <<'PY'
import json, sys
calls = [{"provider": "openai", "model": "gpt-4o-2024-08-06", "agent_id": "main",
          "session_id": f"s{i % 20}", "prompt_tokens": 1000 + i, "completion_tokens": 200,
          "cache_read_tokens": 500, "latency_ms": 100 + i % 900} for i in range(500)]
json.dump(calls, open(sys.argv[1], "w"))
PY
START=$(date +%s.%N)
for _ in $(seq 1 40); do
  # 429 when the queue is full: wait and send again, as a client should.
  until curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @"$DIR/batch.json" "$URL/v1/traces"; do
    sleep 0.1
  done
done
for _ in $(seq 1 600); do
  N=$(curl -sf "$URL/v1/usage" | jq '.totals.calls')
  [ "$N" = 20000 ] && break
  sleep 0.05
done
END=$(date +%s.%N)
awk -v s="$START" -v e="$END" 'BEGIN { printf "ingest: 20000 LLM calls committed with cost + rollups + budgets in %.2f s (%.0f calls/s)\n", e - s, 20000 / (e - s) }'

# Budget checks: 2 000 requests over one keep-alive connection.
ARGS=()
for _ in $(seq 1 2000); do ARGS+=(-o /dev/null "$URL/v1/budget?agent=main"); done
curl -s -w '%{time_total}\n' "${ARGS[@]}" | sort -n > "$DIR/times"
awk '{ t[NR] = $1 } END {
  printf "GET /v1/budget (client-side, keep-alive, %d requests): p50 %.3f ms  p99 %.3f ms  max %.3f ms\n",
    NR, t[int(NR * 0.50)] * 1000, t[int(NR * 0.99)] * 1000, t[NR] * 1000 }' "$DIR/times"
curl -s "$URL/v1/budget?agent=main" | jq -c '.budgets[] | {budget, spent, percent, over}'
