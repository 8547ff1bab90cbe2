#!/usr/bin/env bash
# systemd-analyze, for tests/deploy.rs (`systemd-analyze verify` of the unit in
# deploy/systemd/). Debian's `systemd` package; nothing to do when it is there.
set -euo pipefail
if command -v systemd-analyze >/dev/null; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
command -v systemd-analyze >/dev/null
