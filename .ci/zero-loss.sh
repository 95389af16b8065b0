#!/usr/bin/env bash
# Zero loss at a URL while a command disrupts what serves it:
#
#   .ci/zero-loss.sh URL -- COMMAND...
#
# wrk keeps 16 keep-alive connections sending GET URL as fast as they are answered (counting
# responses by status with reliability/count.lua), COMMAND runs, and 2 s after it ends the load
# stops. It passes when COMMAND succeeded, at least one request was answered, and no request
# failed: every response 2xx, no connect, read, write or timeout error.
#
# The end-to-end workflow runs it against the minikube Service during
# `kubectl rollout restart`; `.ci/workflows.sh` runs it here against a local server, once
# undisturbed and once with the server killed (which must fail). The load is bounded: wrk stops
# after ZERO_LOSS_MAX_SECONDS (default 600) whatever COMMAND does.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

if [ $# -lt 3 ] || [ "$2" != "--" ]; then
  echo "usage: $0 URL -- COMMAND..." >&2
  exit 2
fi
url=$1
shift 2
max=${ZERO_LOSS_MAX_SECONDS:-600}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
wrk -t2 -c16 "-d${max}s" --timeout 5s -s "$here/reliability/count.lua" "$url" >"$out" 2>&1 &
wrk=$!
sleep 2 # the load is steady before the disruption starts

status=0
"$@" || status=$?
sleep 2 # and stays on after it, to catch failures at the very end
kill -INT "$wrk" 2>/dev/null || true
wait "$wrk" || true

summary=$(grep '^WRK_JSON ' "$out" | cut -d' ' -f2-) || { cat "$out" >&2; echo "wrk printed no summary" >&2; exit 1; }
python3 - "$summary" "$status" <<'EOF'
import json
import sys

r = json.loads(sys.argv[1])
command_status = int(sys.argv[2])
socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
failed = r["non2xx"] + socket_errors
print(f"zero-loss: {r['requests']} requests, {r['ok']} 2xx, {r['non2xx']} non-2xx, "
      f"socket errors connect {r['connect']} read {r['read']} write {r['write']} "
      f"timeout {r['timeout']}; p99 {r['p99_us'] / 1000:.1f} ms; command exit {command_status}")
reasons = [why for bad, why in [
    (command_status != 0, f"the command exited {command_status}"),
    (r["ok"] == 0, "no request was answered"),
    (failed > 0, f"{failed} failed (non-2xx responses and socket errors)"),
] if bad]
print("zero-loss: PASS" if not reasons else f"zero-loss: FAIL: {'; '.join(reasons)}")
sys.exit(1 if reasons else 0)
EOF
