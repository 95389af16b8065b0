# `nix build .#sbom`: a CycloneDX 1.5 document (JSON) of the crates compiled into the binary,
# each with its version, license, checksum and purl. .ci/sbom.sh runs the same tool with the
# same arguments (nix/sbom.json) outside Nix and validates the result.
#
# The arguments, in nix/sbom.json:
#   --all            every crate, not only the direct dependencies;
#   --target         only what is compiled for the binary's target (cargo metadata
#                    --filter-platform): mimalloc on musl, no Windows crates;
#   --no-build-deps  normal dependencies only: dev-dependencies are never listed, and
#                    build-dependencies (build scripts' crates, run at build time, not linked in)
#                    are left out too. Proc-macro crates are normal dependencies and stay: the
#                    code they generate is in the binary.
{
  lib,
  cargo-cyclonedx,
  craneLib,
  package,
}:
let
  inherit (package) commonArgs rustTarget;
  how = lib.importJSON ./sbom.json;
  args = how.args ++ [ "--target=${rustTarget}" ];
in
# CI pins cargo-cyclonedx at the version nix/sbom.json names; nixpkgs' may be a later patch
# release of the same series, whose output format is the same.
assert lib.assertMsg
  (lib.versions.majorMinor cargo-cyclonedx.version == lib.versions.majorMinor how.cargo-cyclonedx)
  "nix/sbom.json names cargo-cyclonedx ${how.cargo-cyclonedx}; nixpkgs has ${cargo-cyclonedx.version}";
# mkCargoDerivation with crane's vendored crates (cargo metadata reads every package of
# Cargo.lock, offline) and nothing compiled, as crane's own cargoAudit is made (lib/cargoAudit.nix).
craneLib.mkCargoDerivation {
  inherit (commonArgs) src pname version;
  pnameSuffix = "-sbom";
  cargoArtifacts = null;
  doInstallCargoArtifacts = false;
  nativeBuildInputs = [ cargo-cyclonedx ];
  buildPhaseCargoCommand = "cargo cyclonedx ${lib.escapeShellArgs args}";
  # cargo-cyclonedx writes the document beside Cargo.toml.
  installPhaseCommand = "install -D -m 0444 ${how.output} $out/${how.output}";
}
