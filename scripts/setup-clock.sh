#!/usr/bin/env bash
# Installs libfaketime (Debian's `faketime`), which scripts/with-clock.sh uses to run
# the suites that read dated data on a moved clock. Idempotent; needs root or sudo.
set -euo pipefail
if command -v faketime >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "setup-clock: faketime is missing and this is not root; install it with apt-get" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends faketime >/dev/null
command -v faketime >/dev/null
