#!/usr/bin/env bash
# Fast reliability checks on every submission (about three minutes, 127.0.0.1 only): one zero-loss
# stop under load, one rolling restart, abusive clients, a schemathesis run, fault-injection rates
# and the serving core's attacks (silent connections, slow readers, blocked stdout, 422 floods,
# a CPU flood against the probes, a failed listener, every limit at once) and the HTTP/2 rows
# (curl --http2-prior-knowledge and h2load, zero-loss stop, rapid reset, many streams, a stream
# whose window stays shut; about 30 s).
# The long runs are `reliability/run` (default profile `long`).
set -euo pipefail
cd "$(dirname "$0")/.."
# The release build (if needed) stays outside the time limit, which is for the checks alone.
if [ -z "${POEM_API_BIN:-}" ] && [ ! -x target/release/poem-api ]; then
  cargo build --release --locked
fi
mkdir -p target
exec timeout 900 reliability/run --profile ci --out target/reliability-ci.md "$@"
