# Sourced by bench/central.sh and bench/central_queries.sh: a private PostgreSQL server
# and the release binary as a fleet's central on it, stopped and removed on exit.
# Sets: dir, url (PostgreSQL), port (the central's API), central (its pid), TOKEN.
# CENTRAL_ENV: more VAR=value settings for the central. PROFILE=profiling runs the
# release build with symbols (for perf: PERF_SECONDS in bench/central.sh); BIN=path
# runs that binary instead of building.
TOKEN=bench-token
bash scripts/setup-postgres.sh
PROFILE=${PROFILE:-release}
# BIN: another build to measure (an older commit's, for a before/after in one session).
if [ -z "${BIN:-}" ]; then
  cargo build --profile "$PROFILE" --locked --bin openclaw-trace
  BIN="target/$PROFILE/openclaw-trace"
fi
dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
port=$(free_port)
central=""
trap '[ -n "$central" ] && kill "$central" 2>/dev/null; wait 2>/dev/null; bash scripts/pg-private.sh stop "$dir/pg"; rm -rf "$dir"' EXIT
url=$(bash scripts/pg-private.sh start "$dir/pg" "$pg_port")
# shellcheck disable=SC2086 # CENTRAL_ENV is a list of settings
env ${CENTRAL_ENV:-} OCT_DATABASE_URL="$url" OCT_PORT="$port" OCT_AUTH_TOKEN="$TOKEN" \
  OCT_DB_PATH="$dir/unused.db" OCT_OTLP_GRPC_ADDR=127.0.0.1:0 OCT_OTLP_HTTP_ADDR=127.0.0.1:0 \
  OCT_LOG_LEVEL=warn "$BIN" >"$dir/central.log" 2>&1 &
central=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD); PostgreSQL $(psql "$url" -XtAc 'SHOW server_version'), shared_buffers $(psql "$url" -XtAc 'SHOW shared_buffers')"
