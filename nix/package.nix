# The poem-api binary, built by crane: the dependencies once (buildDepsOnly), reused by the
# package and by every check in checks.nix. On Linux it is a static musl executable.
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
  # the cc crate), so both the linker and cc's compiler here are pkgsStatic's musl cross compiler
  # for this architecture, set the way crane's own cross support sets them
  # (lib/mkCrossToolchainEnv.nix). Build scripts and proc macros still build for the host:
  # cargo applies these rustflags to the target only when a build target is set.
  musl = pkgsStatic.stdenv;
  target = musl.hostPlatform.rust.rustcTarget;
  muslCc = "${musl.cc}/bin/${musl.cc.targetPrefix}cc";
  staticMusl = {
    CARGO_BUILD_TARGET = target;
    CARGO_BUILD_RUSTFLAGS = "-C target-feature=+crt-static";
    "CARGO_TARGET_${musl.hostPlatform.rust.cargoEnvVarTarget}_LINKER" = muslCc;
    "CC_${lib.replaceStrings [ "-" ] [ "_" ] target}" = muslCc;
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
    passthru = { inherit commonArgs cargoArtifacts testSrc; };
    meta = {
      inherit (cargoToml.package) description;
      # The binary target is named after the package.
      mainProgram = crate.pname;
    };
  }
)
