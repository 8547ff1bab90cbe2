#!/usr/bin/env bash
# OTLP receiver benchmark. OTLP/HTTP protobuf requests of $SPANS GenAI spans (about 400
# bytes of attributes each) over $CONNECTIONS keep-alive connections for $LOAD_SECONDS,
# with 429/503 Retry-After honoured as OTLP clients do. Reports, for openclaw-trace and
# then Arize Phoenix under the identical load: spans acknowledged, spans that actually
# landed in the store, committed spans/s (landed / time from the first request to the
# last commit), and RSS (peak and mean, sampled every 200 ms, whole process tree).
#
#   bash bench/otlp.sh                 # both
#   PHOENIX=0 bash bench/otlp.sh       # openclaw-trace only
#
# Phoenix (PyPI arize-phoenix, a large install) goes into .cache/venv-phoenix on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

LOAD_SECONDS=${LOAD_SECONDS:-20}
CONNECTIONS=${CONNECTIONS:-4}
SPANS=${SPANS:-100}
PHOENIX=${PHOENIX:-1}
PHOENIX_VERSION=${PHOENIX_VERSION:-20.26.1}

out=bench/out/otlp
mkdir -p "$out"
cargo build --release --bin openclaw-trace --example otlp_load
LOAD=target/release/examples/otlp_load
# OCT_BIN compares another build of the daemon under the same load.
OCT_BIN=${OCT_BIN:-target/release/openclaw-trace}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Sums VmRSS (kB) over a process and its children, every 200 ms, while it lives.
sample_rss() {
  local pid=$1 file=$2
  : > "$file"
  while kill -0 "$pid" 2>/dev/null; do
    local total=0 p r
    for p in $pid $(pgrep -P "$pid" || true); do
      r=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
      total=$((total + ${r:-0}))
    done
    echo "$total" >> "$file"
    sleep 0.2
  done
}

count_rows() { # db sql
  python3 - "$1" "$2" <<'PY'
import sqlite3, sys
try:
    c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
    print(c.execute(sys.argv[2]).fetchone()[0])
except Exception:
    print(0)
PY
}

# Polls the store until the count stops changing for 10 s (at most 180 s after the load);
# prints "landed seconds_from_load_start_to_last_change".
wait_landed() { # db sql start_epoch_seconds
  local db=$1 sql=$2 start=$3 last=-1 last_change stable_since now n
  last_change=$(date +%s.%N)
  stable_since=$last_change
  local give_up=$(( $(date +%s) + 180 ))
  while (( $(date +%s) < give_up )); do
    n=$(count_rows "$db" "$sql")
    now=$(date +%s.%N)
    if [[ "$n" != "$last" ]]; then
      last=$n; last_change=$now; stable_since=$now
    elif awk -v a="$now" -v b="$stable_since" 'BEGIN {exit !(a - b > 10)}'; then
      break
    fi
    sleep 0.2
  done
  echo "$last $(awk -v a="$last_change" -v b="$start" 'BEGIN {printf "%.3f", a - b}')"
}

cpu_seconds() { # pid -> user+system CPU seconds of it and its children so far
  local total=0 p t
  for p in $1 $(pgrep -P "$1" || true); do
    t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    total=$((total + ${t:-0}))
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}

steal_jiffies() { # -> "steal total" over all CPUs, from /proc/stat
  awk '/^cpu / {print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}

steal_since() { # "steal total" from steal_jiffies -> percent of the CPU the hypervisor took since
  local s0 t0 s1 t1
  read -r s0 t0 <<< "$1"; read -r s1 t1 < <(steal_jiffies)
  awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.0f", (t > 0 ? 100 * s / t : 0)}'
}

rss_stats() { # file -> "peak_MB mean_MB"
  awk '$1 > 0 {n++; s+=$1; if ($1>m) m=$1} END {if (n==0) print "0 0"; else printf "%.1f %.1f\n", m/1024, s/n/1024}' "$1"
}

report() { # name load_json landed seconds rss_file cpu_seconds
  local name=$1 load=$2 landed=$3 secs=$4 rss
  rss=$(rss_stats "$5")
  python3 - "$name" "$load" "$landed" "$secs" $rss "$6" <<'PY' | tee -a "$out/results.jsonl"
import json, sys
name, load, landed, secs, peak, mean, cpu = sys.argv[1:8]
cpu = float(cpu)
load = json.loads(load)
landed, secs = int(landed), float(secs)
print(json.dumps({
    "target": name, "spans_acked": load["spans_acked"], "spans_landed": landed,
    "committed_spans_per_s": round(landed / secs) if secs > 0 else 0,
    "acked_spans_per_s": load["acked_per_sec"], "requests": load["requests"],
    "retries_429_503": load["retries"], "errors": load["errors"],
    "rss_peak_mb": float(peak), "rss_mean_mb": float(mean),
    "server_cpu_seconds": cpu, "spans_per_server_cpu_second": round(landed / cpu) if cpu > 0 else 0,
    "connections": int(__import__("os").environ.get("CONNECTIONS", "4")),
    "load_seconds": int(__import__("os").environ.get("LOAD_SECONDS", "20")),
}))
PY
}

# Other work on the machine takes CPU from both targets: the load average is printed with
# each result, and CPU seconds per span are reported (they do not depend on that load).
echo "# machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- openclaw-trace
dir=$(mktemp -d)
port=$(free_port)
# The size cap is raised so that retention does not delete spans while they are counted.
OCT_PORT=$port OCT_DB_PATH="$dir/trace.db" OCT_OTLP_HTTP_ADDR=off OCT_OTLP_GRPC_ADDR=off \
  OCT_CLEANUP_DB_THRESHOLD_BYTES=16GiB OCT_LOG_FORMAT=json "$OCT_BIN" > "$dir/daemon.log" 2>&1 &
oct=$!
trap 'kill $oct 2>/dev/null || true; [[ -n "${phx:-}" ]] && kill $phx 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
sample_rss "$oct" "$out/rss-openclaw-trace.txt" &
steal0=$(steal_jiffies)
start=$(date +%s.%N)
load=$($LOAD --url "http://127.0.0.1:$port/v1/traces" --connections "$CONNECTIONS" --seconds "$LOAD_SECONDS" --spans "$SPANS")
read -r landed secs < <(wait_landed "$dir/trace.db" "SELECT count(*) FROM spans" "$start")
report openclaw-trace "$load" "$landed" "$secs" "$out/rss-openclaw-trace.txt" "$(cpu_seconds "$oct")"
echo "# CPU stolen by the hypervisor from the load's start to the last commit: $(steal_since "$steal0") %"
echo "# openclaw-trace database: $(du -m "$dir/trace.db" | cut -f1) MB for $landed spans"
kill -TERM "$oct"; wait "$oct" 2>/dev/null || true
rm -rf "$dir"

[[ "$PHOENIX" == "1" ]] || exit 0

# ---------------------------------------------------------------- Arize Phoenix
venv=.cache/venv-phoenix
if [[ ! -x "$venv/bin/phoenix" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "arize-phoenix==$PHOENIX_VERSION"
fi
pdir=$(mktemp -d)
pport=$(free_port)
gport=$(free_port)
PHOENIX_WORKING_DIR="$pdir" PHOENIX_PORT=$pport PHOENIX_GRPC_PORT=$gport PHOENIX_HOST=127.0.0.1 \
  "$venv/bin/phoenix" serve > "$pdir/phoenix.log" 2>&1 &
phx=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$pport/healthz" >/dev/null && break; sleep 0.2; done
sample_rss "$phx" "$out/rss-phoenix.txt" &
start=$(date +%s.%N)
load=$($LOAD --url "http://127.0.0.1:$pport/v1/traces" --connections "$CONNECTIONS" --seconds "$LOAD_SECONDS" --spans "$SPANS")
read -r landed secs < <(wait_landed "$pdir/phoenix.db" "SELECT count(*) FROM spans" "$start")
report phoenix "$load" "$landed" "$secs" "$out/rss-phoenix.txt" "$(cpu_seconds "$phx")"
kill -TERM "$phx"; wait "$phx" 2>/dev/null || true
rm -rf "$pdir"
