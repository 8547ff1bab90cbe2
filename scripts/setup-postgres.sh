#!/usr/bin/env bash
# Installs Debian's `postgresql` package (the server binaries: initdb, pg_ctl, postgres,
# and psql) for the PostgreSQL store's tests and bench/fleet.sh. Idempotent. The package's
# own cluster is not used: scripts/pg-private.sh starts a private server per test.
set -euo pipefail
# openssl makes the TLS test's certificates (pg-private.sh, PG_TLS=1).
if [ -n "$(bash "$(dirname "$0")/pg-private.sh" bindir 2>/dev/null)" ] && command -v psql >/dev/null \
  && command -v openssl >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql openssl >/dev/null
# Debian's postinst may start the system cluster; the tests never use it.
if command -v pg_ctlcluster >/dev/null; then
  for c in $(ls /etc/postgresql 2>/dev/null); do
    $SUDO pg_ctlcluster "$c" main stop >/dev/null 2>&1 || true
  done
fi
[ -n "$(bash "$(dirname "$0")/pg-private.sh" bindir)" ] && command -v openssl >/dev/null
