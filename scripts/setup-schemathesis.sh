#!/usr/bin/env bash
# Installs schemathesis (the OpenAPI contract run of tests/openapi.rs) into
# .cache/venv-schemathesis, once. Idempotent: a second run with the venv in place does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/venv-schemathesis
SPEC='schemathesis>=4.3,<5'
if [ -x "$VENV/bin/st" ] && "$VENV/bin/st" --version >/dev/null 2>&1; then
  exit 0
fi
PY=${PYTHON:-python3}
if ! "$PY" -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$SPEC"
"$VENV/bin/st" --version
