#!/usr/bin/env bash
# The Nix files, offline (no machine here can build them: see shared/nix-inputs.md):
#  - every tracked .nix file parses (nix-instantiate --parse, Debian's Nix 2.8);
#  - none has an unused binding or argument (deadnix --fail);
#  - every one is formatted as the flake's formatter writes it (nixfmt 1.2 rules, checked with
#    nixfmt-rs, a byte-for-byte reimplementation from crates.io);
#  - flake.nix and flake.lock agree (inputs, owners, follows): Nix takes the lock without
#    downloading anything, and leaves it unchanged.
# Nix only ever sees a throwaway store and HOME, so the machine gets no /nix of ours.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nix-instantiate >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nix-bin >/dev/null
fi
command -v deadnix >/dev/null || cargo install --locked --quiet deadnix@1.3.1
command -v nixfmt >/dev/null || cargo install --locked --quiet nixfmt_rs@0.5.3

tmp=$(mktemp -d)
cleanup() {
  chmod -R u+w "$tmp" 2>/dev/null || true # store paths are read-only
  rm -rf "$tmp"
}
trap cleanup EXIT
nixenv=(env HOME="$tmp/home")
store=(--store "$tmp/store")

mapfile -t files < <(git ls-files '*.nix')
[ ${#files[@]} -gt 0 ] || { echo "no .nix file is tracked" >&2; exit 1; }
[ -f flake.lock ] || { echo "flake.lock is missing" >&2; exit 1; }
failed=0
check() { # check NAME COMMAND...: run it, report it, remember a failure
  local name=$1
  shift
  echo "== $name"
  if "$@"; then echo "ok: $name"; else echo "FAILED: $name" >&2; failed=$((failed + 1)); fi
}

parse_all() {
  local f status=0
  for f in "${files[@]}"; do
    "${nixenv[@]}" nix-instantiate "${store[@]}" --parse "$f" >/dev/null || { echo "  $f does not parse" >&2; status=1; }
  done
  return $status
}

lock_consistent() {
  local flake=$tmp/flake
  mkdir -p "$flake"
  cp flake.nix flake.lock "$flake"/ # only these two: path: copies the whole directory
  "${nixenv[@]}" nix --extra-experimental-features 'nix-command flakes' "${store[@]}" --offline \
    flake lock --no-update-lock-file "path:$flake" &&
    cmp flake.lock "$flake/flake.lock"
}

check "nix-instantiate --parse (${#files[@]} files)" parse_all
check "deadnix --fail" deadnix --fail "${files[@]}"
check "nixfmt --check" nixfmt --check "${files[@]}"
check "flake.nix and flake.lock agree, offline" lock_consistent

total=4
echo "nix: $((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
