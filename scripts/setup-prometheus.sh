#!/usr/bin/env bash
# Installs Debian's `prometheus` package (promtool and the server) for tests/metrics.rs.
# Idempotent: does nothing when both binaries are already on PATH.
set -euo pipefail
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The package's service is not wanted (and there may be no init system): the test starts
# its own server on loopback with a temporary config and data directory.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Debian's postinst may start a system instance on :9090; stop it if it did.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl stop prometheus || true
fi
if pidof prometheus >/dev/null 2>&1 && command -v service >/dev/null; then
  $SUDO service prometheus stop >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null && command -v prometheus >/dev/null
