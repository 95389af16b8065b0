# flake.nix's outputs, wired to stand-ins for nixpkgs (./nixpkgs), crane (./crane.nix) and
# rust-overlay, for .ci/nix.sh: Nix 2.8 evaluates them without any input, and this file checks
# what each system gets, which architecture each image and binary is for, and that macOS's deploy
# takes the Linux builder's images. Evaluates to a summary line per checked fact.
let
  lib = import ./lib.nix;
  flake = import ../../flake.nix;
  outputs = flake.outputs {
    self = {
      lastModifiedDate = "20261201112233";
    };
    nixpkgs = {
      inherit lib;
      outPath = ./nixpkgs;
    };
    crane.mkLib = import ./crane.nix;
    rust-overlay.overlays.default = _final: _prev: {
      rust-bin.fromRustupToolchainFile = file: {
        toolchainFile = file;
        override = f: f { extensions = [ ]; };
      };
    };
    advisory-db = "advisory-db";
  };
  names = set: builtins.concatStringsSep " " (builtins.attrNames set);
  fact = what: cond: if cond then "ok: ${what}" else throw "flake.nix: ${what}: not so";
  linux = outputs.packages.x86_64-linux;
  arm = outputs.packages.aarch64-linux;
  mac = outputs.packages.aarch64-darwin;
  # The binary inside an image (the image's contents).
  binaryOf = image: builtins.head image.contents;
  targetOf = pkg: pkg.CARGO_BUILD_TARGET or "native ${pkg.outPath}";
in
builtins.concatStringsSep "\n" [
  (fact "Linux packages are ${names linux}" (
    names linux
    == "default image image-amd64 image-arm64 poem-api-amd64 poem-api-arm64 sbom sbom-amd64 sbom-arm64"
  ))
  (fact "macOS packages are ${names mac}" (names mac == "default sbom"))
  (fact "x86_64 Linux: default is static musl x86_64" (
    targetOf linux.default == "x86_64-unknown-linux-musl"
  ))
  (fact "macOS: default is a native build" (!(mac.default ? CARGO_BUILD_TARGET)))
  (fact "x86_64 Linux: image is image-amd64" (linux.image == linux.image-amd64))
  (fact "aarch64 Linux: image is image-arm64" (arm.image == arm.image-arm64))
  (fact "image-arm64 is OCI arm64 around an aarch64 musl binary, on either Linux" (
    builtins.all
      (
        p:
        p.image-arm64.architecture == "arm64"
        && targetOf (binaryOf p.image-arm64) == "aarch64-unknown-linux-musl"
      )
      [
        linux
        arm
      ]
  ))
  (fact "image-amd64 is OCI amd64 around an x86_64 musl binary, on either Linux" (
    builtins.all
      (
        p:
        p.image-amd64.architecture == "amd64"
        && targetOf (binaryOf p.image-amd64) == "x86_64-unknown-linux-musl"
      )
      [
        linux
        arm
      ]
  ))
  (fact "on x86_64 the arm64 binary links with the aarch64 musl cross compiler" (
    linux.poem-api-arm64.CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER
    == "/nix/store/cc-aarch64-musl/bin/aarch64-unknown-linux-musl-cc"
    &&
      linux.poem-api-arm64.CC_aarch64_unknown_linux_musl
      == "/nix/store/cc-aarch64-musl/bin/aarch64-unknown-linux-musl-cc"
    &&
      linux.poem-api-arm64.AR_aarch64_unknown_linux_musl
      == "/nix/store/bintools-aarch64-musl/bin/aarch64-unknown-linux-musl-ar"
  ))
  (fact "on x86_64 the amd64 binary is the default package" (linux.poem-api-amd64 == linux.default))
  (fact "sbom-arm64 lists the crates for aarch64-unknown-linux-musl" (
    builtins.match ".*'--target=aarch64-unknown-linux-musl'.*" linux.sbom-arm64.buildPhaseCargoCommand
    != null
  ))
  (fact "macOS's sbom is for aarch64-apple-darwin" (
    builtins.match ".*'--target=aarch64-apple-darwin'.*" mac.sbom.buildPhaseCargoCommand != null
  ))
  (fact "macOS's deploy carries the aarch64 Linux builder's images, and Linux's its own" (
    let
      # The store paths the script assigns to `image=`, in the order of its case branches.
      imagesIn =
        system:
        map builtins.head (
          builtins.filter builtins.isList (
            builtins.split "image=(/nix/store/[^[:space:]]*)" outputs.apps.${system}.deploy.program
          )
        );
    in
    imagesIn "aarch64-darwin" == [
      "/nix/store/image-amd64-aarch64-linux"
      "/nix/store/image-arm64-aarch64-linux"
    ]
    &&
      imagesIn "x86_64-darwin" == [
        "/nix/store/image-amd64-x86_64-linux"
        "/nix/store/image-arm64-x86_64-linux"
      ]
    &&
      imagesIn "x86_64-linux" == [
        "/nix/store/image-amd64-x86_64-linux"
        "/nix/store/image-arm64-x86_64-linux"
      ]
  ))
  (fact "checks on x86_64 Linux are ${names outputs.checks.x86_64-linux}" (
    names outputs.checks.x86_64-linux
    == "audit build clippy deploy fmt image-amd64 image-arm64 nextest sbom static-amd64 static-arm64"
  ))
  (fact "checks on macOS are ${names outputs.checks.aarch64-darwin}" (
    names outputs.checks.aarch64-darwin == "audit build clippy fmt nextest sbom"
  ))
  (fact "nix fmt runs nixfmt-tree on every system" (
    builtins.all (f: f.name == "nixfmt-tree") (builtins.attrValues outputs.formatter)
  ))
  (fact "apps: ${names outputs.apps.x86_64-linux}" (
    names outputs.apps.x86_64-linux == "default deploy"
  ))
]
