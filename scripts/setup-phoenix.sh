#!/usr/bin/env bash
# Installs Arize Phoenix (the OTLP destination of tests/otlp_export.rs) into
# .cache/venv-phoenix, once. Idempotent: a second run with the venv in place does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/venv-phoenix
# Phoenix >= 15.10 reads the OpenTelemetry GenAI semantic conventions (gen_ai.*).
SPEC='arize-phoenix>=15.10,<21'
if [ -x "$VENV/bin/phoenix" ] && "$VENV/bin/python" -c 'import phoenix' 2>/dev/null; then
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
"$VENV/bin/python" -c 'import phoenix; print("phoenix", phoenix.__version__)'
