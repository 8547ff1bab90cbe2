#!/usr/bin/env bash
# musl libc and musl-gcc (Debian's `musl` and `musl-tools`), for tests/static_binary.rs:
# the static binary runs in a root whose only C library is musl, as on Alpine.
set -euo pipefail
if command -v musl-gcc >/dev/null && [ -e /lib/ld-musl-x86_64.so.1 ]; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl musl-tools >/dev/null
command -v musl-gcc >/dev/null
