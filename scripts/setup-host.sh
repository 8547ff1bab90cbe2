#!/usr/bin/env bash
# Installs what the host-health tests compare against: Debian's
# prometheus-node-exporter (the reference for memory, filesystem, network,
# load and CPU figures). Idempotent; needs root (CI runs as root) or sudo.
set -euo pipefail
if command -v prometheus-node-exporter >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "setup-host: prometheus-node-exporter is missing and this is not root; install it with apt-get" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null
command -v prometheus-node-exporter >/dev/null
