{
  description = "poem-api: an HTTP API service on poem and tokio, built, packaged and deployed with Nix";

  # Locked in flake.lock with the verified nodes of shared/nix-inputs.md; keep both in step.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    # crane has no inputs, so there is nothing for it to follow.
    crane.url = "github:ipetkov/crane";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # The RustSec advisory database for the audit check (crane's cargoAudit).
    advisory-db = {
      url = "github:rustsec/advisory-db";
      flake = false;
    };
  };

  # Wiring only: every output is a callPackage of a file in nix/.
  outputs =
    {
      self,
      nixpkgs,
      crane,
      rust-overlay,
      advisory-db,
    }:
    let
      # The locked crane supports Nix 2.31.2 and later (its CHANGELOG, "dropped compatibility for
      # Nix versions below 2.31.2"); nixpkgs 26.05 alone would take 2.18. Checked before any input
      # is read (inputs are fetched lazily), so an older Nix stops here with this message rather
      # than with an evaluation error deep inside crane. .ci/nix.sh runs Nix 2.8 against it.
      minimumNix = "2.31.2";
      nixIsRecentEnough =
        builtins.compareVersions builtins.nixVersion minimumNix >= 0
        || throw "poem-api's flake needs Nix ${minimumNix} or later (with the nix-command and flakes features); this is Nix ${builtins.nixVersion}. See the README's Nix section.";

      inherit (nixpkgs) lib;

      # nixpkgs 26.05 is the last release with x86_64-darwin: drop it when moving to 26.11.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];

      # Images are for Kubernetes nodes, named as a node's status.nodeInfo.architecture names
      # them. Each holds a static musl binary, built on either Linux system: for its own
      # architecture with its own pkgsStatic (what callPackage passes package.nix by default), for
      # the other cross-compiled with that architecture's static set (nixpkgs lib/systems/
      # examples.nix: musl64, aarch64-multiplatform-musl).
      nodeArchitectures = {
        amd64 =
          pkgs:
          if pkgs.stdenv.hostPlatform.isx86_64 then pkgs.pkgsStatic else pkgs.pkgsCross.musl64.pkgsStatic;
        arm64 =
          pkgs:
          if pkgs.stdenv.hostPlatform.isAarch64 then
            pkgs.pkgsStatic
          else
            pkgs.pkgsCross.aarch64-multiplatform-musl.pkgsStatic;
      };

      perSystem =
        system:
        let
          pkgs = import nixpkgs {
            inherit system;
            overlays = [ rust-overlay.overlays.default ];
          };
          inherit (pkgs.stdenv.hostPlatform) isLinux;
          # A function of the (spliced) package set, as crane's overrideToolchain asks for
          # (crane docs/API.md); rust-toolchain.toml is the pin rustup reads too.
          craneLib = (crane.mkLib pkgs).overrideToolchain (
            p: p.rust-bin.fromRustupToolchainFile ./rust-toolchain.toml
          );
          revision = self.rev or "dirty";
          lastModifiedDate = self.lastModifiedDate or "19700101000001";

          # The host's own build: static musl on Linux, native on macOS.
          package = pkgs.callPackage ./nix/package.nix { inherit craneLib revision; };
          sbom = pkgs.callPackage ./nix/sbom.nix { inherit craneLib package; };

          # Per node architecture (Linux systems only): the static binary, built with that
          # architecture's static package set for its musl C compiler; its image; its SBOM.
          forNode = lib.mapAttrs (
            architecture: staticPkgs:
            let
              binary = pkgs.callPackage ./nix/package.nix {
                inherit craneLib revision;
                pkgsStatic = staticPkgs pkgs;
              };
            in
            {
              inherit binary;
              image = pkgs.callPackage ./nix/image.nix {
                inherit revision lastModifiedDate architecture;
                package = binary;
              };
              sbom = pkgs.callPackage ./nix/sbom.nix {
                inherit craneLib;
                package = binary;
              };
            }
          ) nodeArchitectures;
          byNode = what: lib.mapAttrs (_: outputs: outputs.${what}) forNode;

          # The images for the deploy: built on this system when it is Linux; on macOS by the Linux
          # builder of the same CPU (README: "On macOS"), from that system's outputs.
          linuxSystem = if isLinux then system else "${pkgs.stdenv.hostPlatform.parsed.cpu.name}-linux";
          deployImages = if isLinux then byNode "image" else outputsBySystem.${linuxSystem}.images;
          deploy = pkgs.callPackage ./nix/deploy.nix { images = deployImages; };

          onLinux = lib.optionalAttrs isLinux;
          suffixed = what: lib.mapAttrs' (arch: lib.nameValuePair "${what}-${arch}") (byNode what);
          app = drv: description: {
            type = "app";
            program = lib.getExe drv;
            meta = { inherit description; };
          };
        in
        {
          packages = {
            inherit sbom;
            default = package;
          }
          # image-amd64, image-arm64, poem-api-amd64, poem-api-arm64, sbom-amd64, sbom-arm64, and
          # `image`, the one for this system's own architecture.
          // onLinux (
            suffixed "image"
            // suffixed "sbom"
            // lib.mapAttrs' (arch: lib.nameValuePair "poem-api-${arch}") (byNode "binary")
            // {
              # The Linux systems are x86_64 and aarch64 (`systems`).
              image = (byNode "image").${if pkgs.stdenv.hostPlatform.isAarch64 then "arm64" else "amd64"};
            }
          );

          # For macOS's deploy (above): this Linux system's images, by node architecture.
          images = onLinux (byNode "image");

          apps = {
            default = app package "Run the poem-api server";
            deploy = app deploy "Build the image for minikube's node and deploy it to minikube";
          };

          # callPackages (plural): an attribute set of derivations, without the `override` that
          # callPackage would add to the set itself (nixpkgs lib/customisation.nix).
          checks =
            pkgs.callPackages ./nix/checks.nix {
              inherit craneLib package advisory-db;
              binaries = onLinux (byNode "binary");
            }
            // {
              inherit sbom;
            }
            # The deploy on macOS needs a Linux builder; `nix flake check` there does without.
            // onLinux (suffixed "image" // { inherit deploy; });

          devShells = {
            default = pkgs.callPackage ./nix/shell.nix { inherit package; };
            bench = pkgs.callPackage ./nix/bench-shell.nix { };
          };

          # `nix fmt` runs the formatter with no arguments (Nix 2.25 and later), and nixfmt alone
          # would then read stdin. nixfmt-tree is treefmt set up with nixfmt for every *.nix file
          # of the tree that git knows of (nixpkgs pkgs/by-name/ni/nixfmt-tree), the files
          # .ci/nix.sh checks.
          formatter = pkgs.nixfmt-tree;
        };

      outputsBySystem = lib.genAttrs systems perSystem;
      collect = output: lib.mapAttrs (_: outputs: outputs.${output}) outputsBySystem;
    in
    # Before any output: every output goes through this, and it reads no input.
    assert nixIsRecentEnough;
    {
      packages = collect "packages";
      apps = collect "apps";
      checks = collect "checks";
      devShells = collect "devShells";
      formatter = collect "formatter";
    };
}
