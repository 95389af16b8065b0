# A stand-in for crane's `mkLib pkgs` (crane lib/default.nix), for nix/tests/flake.nix: each
# builder returns its arguments with a name and a store path instead of a derivation, merging
# `passthru` into the result as mkDerivation does.
pkgs:
let
  drv =
    kind: args:
    args
    // (args.passthru or { })
    // {
      inherit kind;
      name = "${args.pname or "crate"}-${kind}";
      outPath = "/nix/store/${kind}-${
        args.CARGO_BUILD_TARGET or pkgs.stdenv.hostPlatform.rust.rustcTarget
      }";
    };
  craneLib = {
    overrideToolchain =
      f:
      craneLib
      // {
        toolchain = f pkgs;
      };
    crateNameFromCargoToml =
      { cargoToml }:
      let
        toml = builtins.fromTOML (builtins.readFile cargoToml);
      in
      {
        pname = toml.package.name;
        inherit (toml.package) version;
      };
    fileset.commonCargoSources = root: [ root ];
    buildDepsOnly = drv "deps";
    buildPackage = drv "package";
    mkCargoDerivation = drv "cargo";
    cargoClippy = drv "clippy";
    cargoFmt = drv "fmt";
    cargoNextest = drv "nextest";
    cargoAudit = drv "audit";
  };
in
craneLib
