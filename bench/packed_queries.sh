#!/usr/bin/env bash
# What packed span values (#20, store::codec) cost the query API, on the same rows:
# fills a database with this tree's binary (the OpenClaw load of bench/density.sh, at a
# 30 MiB cap), makes a plain copy of it (every value unpacked by Python's zstandard,
# schema 12, as a binary from before packing reads it), then times the same queries on
# each, alternating twice: the runs list, one run (the 300 newest), a session's
# conversation (the 100 newest) and usage over 24 h, three rounds each; p50 and p95 in ms.
#
#   OLD_BIN=/path/to/pre-packing/openclaw-trace bash bench/packed_queries.sh
#   FILL=0 ...   # keep the filled database of the last run, only query again
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OLD_BIN:?OLD_BIN: a build from before packing (schema 12), e.g. of a674572}"
NEW_BIN=${NEW_BIN:-target/release/openclaw-trace}
[[ -n "${NEW_BIN_BUILT:-}" ]] || cargo build --release --bin openclaw-trace
W=bench/out/packed_queries
venv=.cache/venv-zstd
[[ -x $venv/bin/python ]] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q zstandard; }
if [[ "${FILL:-1}" = 1 ]]; then rm -rf "$W/a"; fi
rm -rf "$W/b"; mkdir -p "$W/a" "$W/b"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start() { # bin dir port cap
  OCT_PORT=$3 OCT_DB_PATH="$2/trace.db" OCT_OTLP_HTTP_ADDR=off OCT_OTLP_GRPC_ADDR=off \
    OCT_CLEANUP_DB_THRESHOLD_BYTES=$4 OCT_CLEANUP_DISK_THRESHOLD=100 OCT_RETENTION_DAYS=0 \
    OCT_LOG_PATH=off OCT_OPENCLAW_STATE_DIR=off "$1" >> "$2/daemon.log" 2>&1 &
  echo $!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$3/ready" >/dev/null && return 0; sleep 0.1; done
}

if [[ "${FILL:-1}" = 1 ]]; then
  p=$(port); pid=$(start "$NEW_BIN" "$W/a" "$p" 30MiB | head -1)
  python3 bench/openclaw_load.py --url "http://127.0.0.1:$p" --turns "${TURNS:-16000}" --connections 4 > "$W/a/load.json"
  sleep 15; kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
fi
# With its WAL: what the daemon wrote after its last checkpoint (the stop, in the activity log).
cp "$W/a/trace.db" "$W/b/trace.db"
[[ -f "$W/a/trace.db-wal" ]] && cp "$W/a/trace.db-wal" "$W/b/trace.db-wal"
"$venv/bin/python" - "$W/b/trace.db" <<'PY'
import sqlite3, sys, zstandard as z
c = sqlite3.connect(sys.argv[1])
dicts = {i: z.ZstdCompressionDict(d) for i, d in c.execute("SELECT id, dict FROM codec_dicts")}
def varint(b, i):
    v = s = 0
    while True:
        x = b[i]; i += 1; v |= (x & 0x7f) << s; s += 7
        if x < 0x80: return v, i
def unpack(b):
    if not isinstance(b, bytes): return b
    d, i = varint(b, 1); n, i = varint(b, i)
    return z.ZstdDecompressor(dict_data=dicts[d], format=z.FORMAT_ZSTD1_MAGICLESS).decompress(
        b[i:], max_output_size=n).decode()
c.create_function("unpack_py", 1, unpack)
cols = ("attributes", "input_text", "output_text", "resource")
c.execute("UPDATE spans SET " + ", ".join(f"{x} = unpack_py({x})" for x in cols))
left = c.execute("SELECT count(*) FROM spans WHERE " + " OR ".join(f"typeof({x}) = 'blob'" for x in cols)).fetchone()[0]
assert left == 0, left
c.execute("DROP TABLE codec_dicts"); c.execute("PRAGMA user_version = 12"); c.commit()
c.execute("VACUUM"); c.close()
PY
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)"
for side in "packed a $NEW_BIN" "plain b $OLD_BIN" "packed a $NEW_BIN" "plain b $OLD_BIN"; do
  set -- $side
  # A cap far above the file: no retention while querying, the same rows on both sides.
  p=$(port); pid=$(start "$3" "$W/$2" "$p" 1GiB | head -1)
  python3 - "$1" "$W/$2/trace.db" "$p" <<'PY'
import http.client, json, sqlite3, sys, time, urllib.parse
name, db, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
traces = [r[0].hex() for r in c.execute("SELECT trace_id FROM traces ORDER BY start_ns DESC LIMIT 300")]
sessions = [r[0] for r in c.execute(
    "SELECT session_id FROM traces WHERE session_id IS NOT NULL GROUP BY session_id ORDER BY max(start_ns) DESC LIMIT 100")]
spans = c.execute("SELECT count(*) FROM spans").fetchone()[0]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def timed(paths, rounds=3):
    t_all = []
    for _ in range(rounds):
        for q in paths:
            t = time.perf_counter(); conn.request("GET", q); r = conn.getresponse(); r.read()
            assert r.status == 200, (q, r.status)
            t_all.append((time.perf_counter() - t) * 1000)
    t_all.sort()
    return {"p50": round(t_all[len(t_all) // 2], 2), "p95": round(t_all[int(len(t_all) * 0.95)], 2)}
now = int(time.time() * 1000)
print(json.dumps({"values": name, "spans": spans,
  "runs_list": timed(["/v1/traces?limit=50"] * 300),
  "one_run": timed([f"/v1/traces/{t}" for t in traces]),
  "session": timed([f"/v1/sessions/{urllib.parse.quote(s, safe='')}" for s in sessions]),
  "usage_24h": timed([f"/v1/usage?group_by=model&from={now - 86400000}"] * 300)}))
PY
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
done
