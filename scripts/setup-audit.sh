#!/usr/bin/env bash
# Installs the `sqlite3` shell (Debian's `sqlite3`), which the audit tests (tests/audit.rs) use to
# tamper with a real database the way someone with shell access would. Idempotent; needs root or sudo.
set -euo pipefail
if command -v sqlite3 >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "setup-audit: sqlite3 is missing and this is not root; install it with apt-get" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null
command -v sqlite3 >/dev/null
