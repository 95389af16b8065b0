#!/usr/bin/env bash
# Container contract test: a static binary, packaged as container/contract.json describes, run by
# `podman kube play` from the rendered minikube overlay, exercised through its published port on
# 127.0.0.1, then taken down while a request is in flight (tests/container).
#
# Runs on a fresh Debian 12 machine as root; installs what it needs, idempotently.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

command -v kubectl >/dev/null || { echo "kubectl (with kustomize) is required" >&2; exit 1; }
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  step "install: podman, runc"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
fi
# The two settings this machine kind needs (see the file); /etc is left alone.
export CONTAINERS_CONF="$PWD/container/containers.conf"
podman --version

# The image holds nothing but the binary, so it must not need a dynamic loader or libc.so.
# The gnu target links statically with crt-static (Debian's libc6-dev ships libc.a); the
# explicit --target keeps these artifacts apart from the ordinary build in target/release.
if [ -n "${POEM_API_STATIC_BIN:-}" ]; then
  step "static binary: $POEM_API_STATIC_BIN (from POEM_API_STATIC_BIN)"
else
  step "static binary: cargo build --release --target x86_64-unknown-linux-gnu (crt-static)"
  RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu
  export POEM_API_STATIC_BIN="$PWD/target/x86_64-unknown-linux-gnu/release/poem-api"
fi

step "container contract: cargo test --test container"
cargo test --locked --test container --no-run
# Bounded: start-up, a few requests and one graceful stop take well under a minute.
timeout 600 cargo test --locked --test container -- --ignored --nocapture
