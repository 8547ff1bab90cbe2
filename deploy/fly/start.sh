#!/usr/bin/env bash
# Starts openclaw-trace beside the OpenClaw gateway on one machine (Fly.io, or any
# container whose entry point this becomes): the plugin installed and enabled first,
# the sidecar next (data on the volume), then the gateway. SIGTERM/SIGINT stop the
# gateway first (so the plugin's last events reach the sidecar), then the sidecar,
# which drains and checkpoints its database. If either exits on its own, the other
# is stopped too and the script exits non-zero, so the machine restarts.
#
# Settings (environment; every OCT_* variable reaches openclaw-trace as usual):
#   DATA_DIR        the volume (default /data); the database goes in $DATA_DIR/openclaw-trace
#   OCT_BIN         the openclaw-trace binary (default: openclaw-trace on PATH)
#   GATEWAY_CMD     how to start the gateway (default: openclaw gateway run)
#   OCT_STOP_GRACE  seconds each process gets to stop before SIGKILL (default 20)
# OpenClaw's own settings (OPENCLAW_STATE_DIR, OPENCLAW_CONFIG_PATH...) are read by both.
set -euo pipefail

DATA_DIR="${DATA_DIR:-/data}"
OCT_BIN="${OCT_BIN:-openclaw-trace}"
GATEWAY_CMD="${GATEWAY_CMD:-openclaw gateway run}"
OCT_STOP_GRACE="${OCT_STOP_GRACE:-20}"
export OCT_DB_PATH="${OCT_DB_PATH:-$DATA_DIR/openclaw-trace/openclaw-trace.db}"
mkdir -p "$(dirname "$OCT_DB_PATH")"

log() { echo "start.sh: $*" >&2; }

# The plugin this binary carries, written where the gateway loads plugins from and
# enabled in its config with this sidecar's address and token. Idempotent. The agent
# runs even when this fails (a JSON5 config, say): the error says what to do.
"$OCT_BIN" openclaw setup || log "plugin setup failed (above); the gateway starts without it"

"$OCT_BIN" serve &
oct=$!
# The gateway starts once the sidecar answers (at most 15 s; it starts anyway after).
for _ in $(seq 1 75); do
  "$OCT_BIN" health --quiet --timeout 1s && break
  kill -0 "$oct" 2>/dev/null || { log "openclaw-trace exited at start"; exit 1; }
  sleep 0.2
done

# shellcheck disable=SC2086 # GATEWAY_CMD is a command line
$GATEWAY_CMD &
gw=$!

stopping=0
# Sends TERM to $1 and waits up to OCT_STOP_GRACE seconds, then KILL.
stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((OCT_STOP_GRACE * 10))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "pid $pid did not stop in ${OCT_STOP_GRACE}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}
shutdown() {
  stopping=1
  log "stopping the gateway, then openclaw-trace"
  stop "$gw"
  stop "$oct"
}
trap shutdown TERM INT

# Whichever ends first (or a signal) ends both.
set +e
wait -n "$oct" "$gw"
status=$?
set -e
if [ "$stopping" = 1 ]; then
  log "stopped"
  exit 0
fi
log "a process exited (status $status); stopping the other"
trap - TERM INT
stop "$gw"
stop "$oct"
exit 1
