#!/usr/bin/env bash
# The Nix files, offline (no machine here can build them: see shared/nix-inputs.md):
#  - every tracked .nix file parses (nix-instantiate --parse, Debian's Nix 2.8);
#  - none has an unused binding or argument (deadnix --fail);
#  - every one is formatted as the flake's formatter writes it (nixfmt 1.2 rules, checked with
#    nixfmt-rs, a byte-for-byte reimplementation from crates.io);
#  - flake.nix and flake.lock agree (inputs, owners, follows): Nix takes the lock without
#    downloading anything, and leaves it unchanged;
#  - `nix fmt` formats the same files: the formatter is nixfmt-tree, whose treefmt walks the files
#    git knows of (`git ls-files --cached --others --exclude-standard`), the list checked here;
#  - an older Nix stops at once with the flake's own message (Nix 2.8, offline, before any input
#    is fetched);
#  - flake.nix's outputs, wired to stand-ins for nixpkgs, crane and rust-overlay
#    (nix/tests/flake.nix): which packages, checks and apps each system has, which architecture
#    each image and binary is for and with which compiler, and macOS's deploy images;
#  - `nix develop` takes the package's build inputs without crane's hooks (nix/tests/shell.nix);
#  - each architecture's image is made as container/contract.json says, with its own OCI
#    architecture (nix/tests/image.nix);
#  - `nix build .#sbom` runs cargo-cyclonedx with the arguments .ci/sbom.sh uses, both read
#    from nix/sbom.json (nix/tests/sbom.nix);
#  - the deploy script loads the image of minikube's node architecture and fails clearly for any
#    other (nix/tests/deploy-script.nix, run against the stubs in nix/tests/stubs), and is clean
#    for ShellCheck, as writeShellApplication requires.
# Nix only ever sees a throwaway store and HOME, so the machine gets no /nix of ours.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nix-instantiate >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nix-bin >/dev/null
fi
command -v shellcheck >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
}
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

# What treefmt (nixfmt-tree) formats: every file git tracks or would track, of its `*.nix` glob.
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.nix')
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

nix_eval() { # nix_eval FILE: the string FILE evaluates to, with Nix 2.8 and no nixpkgs
  "${nixenv[@]}" nix --extra-experimental-features nix-command "${store[@]}" eval --raw -f "$1"
}

formatter_walks_the_tree() {
  # `nix fmt` passes no file (Nix 2.25 and later); nixfmt alone would wait on stdin.
  grep -qxF '          formatter = pkgs.nixfmt-tree;' flake.nix ||
    { echo "  flake.nix: the formatter is not pkgs.nixfmt-tree" >&2; return 1; }
}

old_nix_stops_early() {
  local flake=$tmp/flake-old-nix out
  mkdir -p "$flake"
  cp flake.nix flake.lock "$flake"/
  # Offline: had the flake read an input first, this would fail on the download instead.
  if out=$("${nixenv[@]}" nix --extra-experimental-features 'nix-command flakes' "${store[@]}" \
    --offline eval "path:$flake#packages.x86_64-linux" --apply builtins.attrNames 2>&1); then
    echo "  Nix $(nix --version) evaluated the flake" >&2
    return 1
  fi
  if ! grep -q "poem-api's flake needs Nix 2.31.2 or later" <<<"$out"; then
    printf '  not the flake'"'"'s message:\n%s\n' "$out" >&2
    return 1
  fi
  grep "needs Nix" <<<"$out"
}

flake_wiring() {
  local copy=$tmp/wiring
  mkdir -p "$copy"
  # A copy whose flake takes this Nix: the version guard is checked on its own above.
  git ls-files -co --exclude-standard -z | tar -c --null -T - | tar -x -C "$copy"
  sed -i 's/builtins.compareVersions builtins.nixVersion minimumNix >= 0/true/' "$copy/flake.nix"
  grep -q '^        true$' "$copy/flake.nix" || { echo "  the version guard was not found" >&2; return 1; }
  (cd "$copy" && nix_eval nix/tests/flake.nix) | sed 's/^/  /'
  [ "${PIPESTATUS[0]}" -eq 0 ]
}

shell_without_crane_hooks() {
  [ "$(nix_eval nix/tests/shell.nix)" = ok ]
}

images_follow_the_contract() {
  nix_eval nix/tests/image.nix && echo
}

sbom_command_matches_ci() {
  local nix_command ci_command
  nix_command=$(nix_eval nix/tests/sbom.nix) || return 1
  # .ci/sbom.sh's command for the same target, quoted as nixpkgs' escapeShellArgs quotes.
  ci_command=$(python3 - <<'EOF'
import json
how = json.load(open("nix/sbom.json"))
args = how["args"] + ["--target=x86_64-unknown-linux-musl"]
quote = "'\\''"
print("cargo cyclonedx " + " ".join("'" + a.replace("'", quote) + "'" for a in args))
EOF
  )
  echo "  $nix_command"
  [ "$nix_command" = "$ci_command" ] || { echo "  .ci/sbom.sh runs: $ci_command" >&2; return 1; }
}

deploy_picks_architecture() {
  local dir=$tmp/deploy status=0 arches expect
  mkdir -p "$dir"
  nix_eval nix/tests/deploy-script.nix >"$dir/text" || return 1
  # The script as writeShellApplication writes it, with k8s/ from the checkout rather than from
  # the throwaway store's copy of it.
  {
    echo '#!/usr/bin/env bash'
    echo 'set -o errexit -o nounset -o pipefail'
    sed -E "s#/nix/store/[a-z0-9]{32}-k8s#$PWD/k8s#g" "$dir/text"
  } >"$dir/deploy.sh"
  shellcheck "$dir/deploy.sh" || return 1

  run_deploy() { # run_deploy NAME ARCHES: the script against the stubs; its output in NAME.out
    local run=$dir/$1
    mkdir -p "$run"
    STUB_DIR=$run STUB_ARCHES=$2 REAL_KUBECTL=$(command -v kubectl) \
      PATH="$PWD/nix/tests/stubs:$PATH" bash "$dir/deploy.sh" >"$run.out" 2>&1
  }
  for arches in amd64 arm64; do
    if ! run_deploy "$arches" "$arches"; then
      echo "  node $arches: the deploy failed:" >&2; cat "$dir/$arches.out" >&2; status=1; continue
    fi
    expect="minikube -p minikube image load /images/poem-api-$arches.tar"
    grep -qxF "$expect" "$dir/$arches/log" ||
      { echo "  node $arches: no '$expect'" >&2; status=1; }
    grep -qF "image: poem-api:tag-$arches" "$dir/$arches/applied.yaml" ||
      { echo "  node $arches: the applied Deployment does not run poem-api:tag-$arches" >&2; status=1; }
    echo "  node $arches: loaded and applied poem-api:tag-$arches"
  done
  if run_deploy s390x s390x || ! grep -qF "minikube's node is s390x; this flake builds images for amd64, arm64 only" "$dir/s390x.out"; then
    echo "  node s390x: no clear failure:" >&2; cat "$dir/s390x.out" >&2; status=1
  else
    echo "  node s390x: $(grep -F 'error:' "$dir/s390x.out")"
  fi
  if run_deploy mixed $'amd64\narm64' || ! grep -qF "nodes of several architectures" "$dir/mixed.out"; then
    echo "  nodes amd64+arm64: no clear failure:" >&2; cat "$dir/mixed.out" >&2; status=1
  fi
  if [ -e "$dir/s390x/images" ] || [ -e "$dir/mixed/images" ]; then
    echo "  an image was loaded although none fits" >&2; status=1
  fi
  return $status
}

check "nix-instantiate --parse (${#files[@]} files)" parse_all
check "deadnix --fail" deadnix --fail "${files[@]}"
check "nixfmt --check" nixfmt --check "${files[@]}"
check "flake.nix and flake.lock agree, offline" lock_consistent
check "nix fmt: nixfmt-tree over the same files" formatter_walks_the_tree
check "an older Nix stops with the flake's message" old_nix_stops_early
check "flake outputs per system, wired to stand-ins" flake_wiring
check "nix develop: build inputs, no crane hooks" shell_without_crane_hooks
check "nix build .#image-amd64, .#image-arm64: the contract" images_follow_the_contract
check "nix build .#sbom: the command .ci/sbom.sh runs" sbom_command_matches_ci
check "nix run .#deploy: the image of the node's architecture" deploy_picks_architecture

total=11
echo "nix: $((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
