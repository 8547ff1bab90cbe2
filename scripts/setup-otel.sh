#!/usr/bin/env bash
# Installs the real OpenTelemetry clients the OTLP receiver's tests drive, under .cache/:
#   .cache/venv-otel   Python SDK + OTLP exporters (http/protobuf, gRPC), openai + its instrumentation
#   .cache/node-otel   the JavaScript OTLP/HTTP (JSON) trace exporter
# Idempotent: a stamp file records what was installed; a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache

PY_PACKAGES=(
  "opentelemetry-api==1.45.2"
  "opentelemetry-sdk==1.45.2"
  "opentelemetry-exporter-otlp-proto-http==1.45.2"
  "opentelemetry-exporter-otlp-proto-grpc==1.45.2"
  "opentelemetry-instrumentation-openai-v2==2.4b0"
  "opentelemetry-util-genai==0.4b0"
  "openai==2.54.0"
)
NODE_PACKAGES=(
  "@opentelemetry/api@1.9.1"
  "@opentelemetry/sdk-trace@2.12.1"
  "@opentelemetry/resources@2.12.1"
  "@opentelemetry/exporter-trace-otlp-http@0.223.1"
)

venv=.cache/venv-otel
stamp="$venv/.installed"
want="${PY_PACKAGES[*]}"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "$want" > "$stamp"
fi

node_dir=.cache/node-otel
nstamp="$node_dir/.installed"
nwant="${NODE_PACKAGES[*]}"
if command -v npm >/dev/null && [[ ! -f "$nstamp" || "$(cat "$nstamp")" != "$nwant" ]]; then
  mkdir -p "$node_dir"
  [[ -f "$node_dir/package.json" ]] || echo '{"name":"oct-otel-tests","private":true}' > "$node_dir/package.json"
  npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error "${NODE_PACKAGES[@]}"
  echo "$nwant" > "$nstamp"
fi
