#!/usr/bin/env bash
# A private PostgreSQL server for tests and benchmarks: initdb into DIR, listen on
# 127.0.0.1:PORT only (the socket inside DIR), run as an unprivileged user (initdb and
# postgres refuse root: as root, the `postgres` user of Debian's package, else nobody).
#
#   pg-private.sh start DIR PORT   prints the URL (postgres://oct@127.0.0.1:PORT/oct)
#                                  PG_TLS=1: TLS on, with a CA made for it (DIR/ca.crt)
#                                  and a server certificate for 127.0.0.1, valid 2 days
#                                  PG_OPTIONS: more `-c name=value` server settings
#   pg-private.sh stop DIR         immediate shutdown
#   pg-private.sh bindir           where initdb and pg_ctl are (empty: not installed)
set -euo pipefail

bindir() {
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/pg_ctl" ]; then
    pg_config --bindir
    return
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then
    echo "$d"
  fi
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    local user=postgres
    id "$user" >/dev/null 2>&1 || user=nobody
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

case "${1:-}" in
  bindir)
    bindir
    ;;
  start)
    dir=$2 port=$3
    bin=$(bindir)
    if [ -z "$bin" ]; then
      echo "PostgreSQL is not installed (bash scripts/setup-postgres.sh)" >&2
      exit 1
    fi
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
      user=postgres
      id "$user" >/dev/null 2>&1 || user=nobody
      chown "$user" "$dir"
      # The user must be able to reach DIR through its parents (a 0700 temp dir's
      # parent, say): they are made traversable, nothing more.
      p=$(dirname "$(realpath "$dir")")
      while [ "$p" != "/" ]; do chmod o+x "$p" 2>/dev/null || true; p=$(dirname "$p"); done
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U oct -A trust -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    tls=""
    if [ "${PG_TLS:-0}" = 1 ]; then
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=openclaw-trace test CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$dir/server.ext"
      openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
      chmod 600 "$dir/server.key"
      if [ "$(id -u)" -eq 0 ]; then chown "$user" "$dir/server.key" "$dir/server.crt"; fi
      tls="-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
    fi
    # Small and quick: a test server, not a tuned one; fsync stays on (the tests kill
    # processes and count what survived).
    # PG_OPTIONS: more server settings (a benchmark's pg_stat_statements, say).
    echo "-c listen_addresses=127.0.0.1 -p $port -k $dir -c shared_buffers=64MB -c max_connections=100 $tls ${PG_OPTIONS:-}" > "$dir/options"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "$(cat "$dir/options")" start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U oct oct
    echo "postgres://oct@127.0.0.1:$port/oct"
    ;;
  resume)
    # Starts again a server made by `start` and stopped by `stop`: same port, same data.
    dir=$2
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "$(cat "$dir/options")" start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    ;;
  stop)
    dir=$2
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: pg-private.sh start DIR PORT | stop DIR | resume DIR | bindir" >&2
    exit 2
    ;;
esac
