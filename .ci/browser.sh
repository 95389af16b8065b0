#!/usr/bin/env bash
# The /docs page in a real browser: Debian's Chromium, driven by playwright-core (npm, pinned in
# tests/browser/package-lock.json; its own browser download does not work here), against the
# real binary on a loopback port. tests/browser/docs.test.js says what it checks.
#
# The binary is $POEM_API_BIN (set by .ci/run), else target/debug/poem-api, built if missing.
# SCREENSHOT=docs/swagger-ui-echo-422.png renews the README's picture.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
chromium --version
# npm ci: exactly the lock, into tests/browser/node_modules only.
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error

if [ -z "${POEM_API_BIN:-}" ]; then
  cargo build --locked
  POEM_API_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/poem-api"
fi
export POEM_API_BIN
SCREENSHOT="${SCREENSHOT:-$(mktemp -d)/docs.png}"
export SCREENSHOT
node --test tests/browser/
echo "screenshot of the page: $SCREENSHOT"
