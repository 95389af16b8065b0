#!/usr/bin/env bash
# The GitHub Actions workflows (.github/workflows), which no machine of this project can run:
#  - actionlint (with shellcheck on every `run:` script) and zizmor (offline audits, auditor
#    persona: every finding, informational ones included): 0 findings;
#  - the script the end-to-end job runs against the cluster, .ci/zero-loss.sh, run here against
#    the real binary on a loopback port: it passes while nothing disturbs the server, and fails
#    when the server is killed under the load (so a pass in the workflow means something).
# The binary is $POEM_API_BIN (set by .ci/run), else target/debug/poem-api, built if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r .ci/requirements.txt

passed=0
failed=0
result() { # result NAME STATUS
  if [ "$2" -eq 0 ]; then echo "ok: $1"; passed=$((passed + 1)); else echo "FAILED: $1" >&2; failed=$((failed + 1)); fi
}

echo "== actionlint $(.venv/bin/actionlint -version | head -n 1)"
status=0
.venv/bin/actionlint .github/workflows/*.yml || status=$?
result "actionlint" $status

echo "== zizmor"
status=0
.venv/bin/zizmor --offline --persona=auditor .github/ || status=$?
result "zizmor --persona=auditor" $status

if [ -z "${POEM_API_BIN:-}" ]; then
  cargo build --locked
  POEM_API_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/poem-api"
fi
port=${ZERO_LOSS_TEST_PORT:-29291}
server=
start_server() {
  POEM_API_HOST=127.0.0.1 POEM_API_PORT=$port POEM_API_ADMIN_PORT=$((port + 1)) \
    POEM_API_ACCESS_LOG=false POEM_API_LOG=warn "$POEM_API_BIN" &
  server=$!
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$((port + 1))/readyz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the server did not become ready" >&2
  return 1
}
stop_server() { [ -n "$server" ] || return 0; kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
tmp=$(mktemp -d)
trap 'stop_server; rm -rf "$tmp"' EXIT

echo "== .ci/zero-loss.sh against an undisturbed server"
start_server
status=0
ZERO_LOSS_MAX_SECONDS=60 bash .ci/zero-loss.sh "http://127.0.0.1:$port/" -- sleep 2 || status=$?
result "zero-loss: undisturbed server passes" $status
stop_server

echo "== .ci/zero-loss.sh while the server is killed (must fail)"
start_server
status=0
ZERO_LOSS_MAX_SECONDS=60 bash .ci/zero-loss.sh "http://127.0.0.1:$port/" -- kill -KILL "$server" \
  | tee "$tmp/killed.out" || status=$?
# It must fail for the failed requests, not for anything else.
grep -q '^zero-loss: FAIL: [0-9]* failed (non-2xx' "$tmp/killed.out" || status=0
result "zero-loss: a killed server fails the check" $((status == 0))
stop_server

echo "workflows: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
