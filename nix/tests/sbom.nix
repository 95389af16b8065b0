# The command nix/sbom.nix runs in its build, for .ci/nix.sh, which compares it with the one
# .ci/sbom.sh runs outside Nix: Nix 2.8 evaluates this without nixpkgs (lib.nix), with crane's
# mkCargoDerivation replaced by its own argument.
let
  lib = import ./lib.nix;
  sbom = import ../sbom.nix {
    inherit lib;
    cargo-cyclonedx.version = (lib.importJSON ../sbom.json).cargo-cyclonedx;
    craneLib.mkCargoDerivation = args: args;
    package = {
      commonArgs = {
        src = "the-cleaned-source";
        pname = "poem-api";
        version = "0.1.0";
      };
      rustTarget = "x86_64-unknown-linux-musl";
    };
  };
in
sbom.buildPhaseCargoCommand
