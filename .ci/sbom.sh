#!/usr/bin/env bash
# The SBOM outside Nix: the same tool (cargo-cyclonedx, at the version nix/sbom.json names) with
# the same arguments as `nix build .#sbom`, for the x86_64 image's target; then
#  - validated against the CycloneDX 1.5 JSON schema (cyclonedx-python-lib's strict validator);
#  - checked against cargo's own view (.ci/sbom_check.py): exactly the crates of Cargo.lock that
#    cargo compiles for the target through normal dependencies, each with version, license,
#    checksum and purl; no dev-dependency.
# The musl target needs no installed standard library here: cargo metadata only evaluates cfg().
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
version=$(python3 -c 'import json; print(json.load(open("nix/sbom.json"))["cargo-cyclonedx"])')
mapfile -t args < <(python3 -c 'import json; print("\n".join(json.load(open("nix/sbom.json"))["args"]))')
output=$(python3 -c 'import json; print(json.load(open("nix/sbom.json"))["output"])')

if ! cargo cyclonedx --version 2>/dev/null | grep -qF " $version"; then
  # Its own lock file, into ~/.cargo/bin; about 1.5 minutes on two cores.
  cargo install --locked --quiet "cargo-cyclonedx@$version"
fi
cargo cyclonedx --version

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r .ci/requirements.txt

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# cargo-cyclonedx writes beside Cargo.toml: run it on a copy of the manifest and lock, so the
# checkout stays clean (the source files are not read, only the manifest and the lock).
cp Cargo.toml Cargo.lock "$work"/
cp -R src "$work"/
(cd "$work" && cargo cyclonedx -q "${args[@]}" "--target=$target")
sbom="$work/$output"
echo "SBOM: $(wc -c <"$sbom") bytes"
(cd "$work" && cargo metadata --locked --format-version 1 --filter-platform "$target") >"$work/metadata.json"
.venv/bin/python .ci/sbom_check.py "$sbom" "$work/metadata.json" "$target"
