# The poem-api binary, built by crane: the dependencies once (buildDepsOnly), reused by the
# package and by every check in checks.nix. On Linux it is a static musl executable, for the
# architecture of `pkgsStatic`: the host's by default (callPackage fills it in), or another one
# when flake.nix passes that architecture's static package set (the aarch64 build on x86_64).
{
  lib,
  stdenv,
  pkgsStatic,
  libiconv,
  craneLib,
  revision,
}:
let
  root = ../.;
  cargoToml = lib.importTOML ../Cargo.toml;
  crate = craneLib.crateNameFromCargoToml { cargoToml = ../Cargo.toml; };

  cargoSources = craneLib.fileset.commonCargoSources root;
  src = lib.fileset.toSource {
    inherit root;
    fileset = cargoSources;
  };
  # For the tests: plus the files tests/api/openapi.rs and tests/api/readme.rs read at run time.
  # (The tests that read container/ and k8s/ need podman or kubectl and are #[ignore]d.)
  testSrc = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      cargoSources
      ../openapi.json
      ../README.md
    ];
  };

  # crane's cross-musl example (examples/cross-musl): the musl target with crt-static. That example
  # links with the host's cc, enough for pure Rust; mimalloc compiles C (libmimalloc-sys, through
  # the cc crate), so the linker, cc's compiler and its archiver here are pkgsStatic's musl cross
  # tools for the target architecture, set the way crane's own cross support sets them
  # (lib/mkCrossToolchainEnv.nix: CARGO_TARGET_<T>_LINKER, CC_<t>, AR_<t>). The archiver comes from
  # the cc wrapper's bintools, which links every binutils program under its target prefix
  # (nixpkgs build-support/bintools-wrapper). The same variables serve the native musl build and
  # the cross one (aarch64 from x86_64 and back): crane runs on the build machine's stdenv either
  # way, so its own cross support stays off and these are the only target settings. Build scripts
  # and proc macros build for the build machine: cargo applies the rustflags to the target only
  # when a build target is set. rust-toolchain.toml lists both musl targets' standard libraries.
  musl = pkgsStatic.stdenv;
  target = musl.hostPlatform.rust.rustcTarget;
  muslCc = "${musl.cc}/bin/${musl.cc.targetPrefix}cc";
  muslAr = "${musl.cc.bintools}/bin/${musl.cc.bintools.targetPrefix}ar";
  ccTarget = lib.replaceStrings [ "-" ] [ "_" ] target;
  staticMusl = {
    CARGO_BUILD_TARGET = target;
    CARGO_BUILD_RUSTFLAGS = "-C target-feature=+crt-static";
    "CARGO_TARGET_${musl.hostPlatform.rust.cargoEnvVarTarget}_LINKER" = muslCc;
    "CC_${ccTarget}" = muslCc;
    "AR_${ccTarget}" = muslAr;
  };

  commonArgs = {
    inherit src;
    inherit (crate) pname version;
    strictDeps = true;
    buildInputs = lib.optionals stdenv.hostPlatform.isDarwin [ libiconv ];
  }
  # macOS has no musl and no fully static executables: there it is a native build.
  // lib.optionalAttrs stdenv.hostPlatform.isLinux staticMusl;

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;
in
craneLib.buildPackage (
  commonArgs
  // {
    inherit cargoArtifacts;
    # Compiled in by src/state.rs (option_env!). Only this crate sees it: the dependency build
    # stays the same from one revision to the next.
    POEM_API_REVISION = revision;
    # The tests run once, in checks.nextest.
    doCheck = false;
    passthru = {
      inherit commonArgs cargoArtifacts testSrc;
      # The Rust target the binary is for (nix/sbom.nix lists the crates compiled for it).
      rustTarget = if stdenv.hostPlatform.isLinux then target else stdenv.hostPlatform.rust.rustcTarget;
    };
    meta = {
      inherit (cargoToml.package) description;
      # The binary target is named after the package.
      mainProgram = crate.pname;
    };
  }
)
