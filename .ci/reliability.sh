#!/usr/bin/env bash
# Fast reliability checks on every submission (a few minutes, 127.0.0.1 only): one zero-loss stop
# under load, one rolling restart, abusive clients, a schemathesis smoke run and fault-injection
# rates. The long runs are `reliability/run` (default profile `long`).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
exec timeout 900 reliability/run --profile ci --out target/reliability-ci.md "$@"
