# A stand-in for `import nixpkgs { system, overlays }`, for nix/tests/flake.nix: the packages
# flake.nix and the files of nix/ ask for, each a marked attribute set instead of a derivation,
# and nixpkgs' callPackage rule (a function's formal arguments taken from the set, or given;
# a missing one without a default is an error). Platforms carry the attributes the files read,
# with nixpkgs' values (lib/systems).
{
  system,
  overlays ? [ ],
}:
let
  lib = import ../lib.nix;
  cpuOf = s: builtins.head (builtins.split "-" s);
  isLinux = builtins.match ".*-linux" system != null;
  # lib.toUpper, and cargo's `-` to `_` (nixpkgs lib/systems/default.nix cargoEnvVarTarget).
  upper =
    builtins.replaceStrings
      [
        "-"
        "a"
        "b"
        "c"
        "d"
        "e"
        "f"
        "g"
        "h"
        "i"
        "j"
        "k"
        "l"
        "m"
        "n"
        "o"
        "p"
        "q"
        "r"
        "s"
        "t"
        "u"
        "v"
        "w"
        "x"
        "y"
        "z"
      ]
      [
        "_"
        "A"
        "B"
        "C"
        "D"
        "E"
        "F"
        "G"
        "H"
        "I"
        "J"
        "K"
        "L"
        "M"
        "N"
        "O"
        "P"
        "Q"
        "R"
        "S"
        "T"
        "U"
        "V"
        "W"
        "X"
        "Y"
        "Z"
      ];
  platform = cpu: kernel: rec {
    isLinux = kernel == "linux";
    isDarwin = kernel == "darwin";
    isx86_64 = cpu == "x86_64";
    isAarch64 = cpu == "aarch64";
    parsed.cpu.name = cpu;
    rust = {
      rustcTarget = if isDarwin then "${cpu}-apple-darwin" else "${cpu}-unknown-linux-${kernel}";
      cargoEnvVarTarget = upper rust.rustcTarget;
    };
  };
  # pkgsStatic of a Linux CPU: musl, static, its cross compiler named by target prefix.
  static =
    cpu:
    let
      prefix = "${cpu}-unknown-linux-musl-";
    in
    {
      stdenv = {
        hostPlatform = platform cpu "linux" // {
          rust = rec {
            rustcTarget = "${cpu}-unknown-linux-musl";
            cargoEnvVarTarget = upper rustcTarget;
          };
        };
        cc = {
          outPath = "/nix/store/cc-${cpu}-musl";
          targetPrefix = prefix;
          bintools = {
            outPath = "/nix/store/bintools-${cpu}-musl";
            targetPrefix = prefix;
          };
        };
      };
    };
  fake = name: {
    inherit name;
    outPath = "/nix/store/fake-${name}-${system}";
  };
  base = {
    inherit lib;
    stdenv.hostPlatform =
      if isLinux then platform (cpuOf system) "linux" else platform (cpuOf system) "darwin";
    pkgsStatic = static (cpuOf system);
    pkgsCross = {
      musl64.pkgsStatic = static "x86_64";
      aarch64-multiplatform-musl.pkgsStatic = static "aarch64";
    };
    callPackage =
      f: given:
      let
        fn = import f;
        wanted = builtins.functionArgs fn;
        missing = builtins.filter (n: !wanted.${n} && !(given ? ${n}) && !(pkgs ? ${n})) (
          builtins.attrNames wanted
        );
      in
      if missing != [ ] then
        throw "${toString f}: nixpkgs has no ${builtins.concatStringsSep ", " missing} here"
      else
        fn (builtins.intersectAttrs wanted pkgs // given);
    callPackages = pkgs.callPackage;
    dockerTools.buildLayeredImage =
      args:
      args
      // {
        imageName = args.name;
        imageTag = "tag-${args.architecture}-${system}";
        outPath = "/nix/store/image-${args.architecture}-${system}";
      };
    # The script's text stays in the fake store path, so that an app's `program` shows it.
    writeShellApplication =
      args:
      args
      // {
        outPath = "/nix/store/${args.name}-${system}\n${args.text}\n";
        meta.mainProgram = args.name;
      };
    runCommand =
      name: env: script:
      env // { inherit name script; };
    writeClosure = paths: { inherit paths; };
    mkShell = args: args;
  }
  // lib.genAttrs [
    "cargo-nextest"
    "kubectl"
    "minikube"
    "kustomize"
    "wrk"
    "nixfmt-tree"
    "deadnix"
    "cargo-audit"
    "coreutils"
    "curl"
    "gnugrep"
    "file"
    "libiconv"
    "nginx"
  ] fake
  // {
    python3 = fake "python3" // {
      withPackages =
        f:
        fake "python3-env"
        // {
          packages = f {
            flask = "flask";
            gunicorn = "gunicorn";
          };
        };
      sitePackages = "lib/python3/site-packages";
    };
    uwsgi = fake "uwsgi" // {
      override = args: fake "uwsgi" // args;
    };
    cargo-cyclonedx = fake "cargo-cyclonedx" // {
      version = "0.5.7";
    };
  };
  pkgs = builtins.foldl' (acc: overlay: acc // overlay pkgs acc) base overlays;
in
pkgs
