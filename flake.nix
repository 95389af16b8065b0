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
      inherit (nixpkgs) lib;

      # nixpkgs 26.05 is the last release with x86_64-darwin: drop it when moving to 26.11.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];

      perSystem =
        system:
        let
          pkgs = import nixpkgs {
            inherit system;
            overlays = [ rust-overlay.overlays.default ];
          };
          # A function of the (spliced) package set, as crane's overrideToolchain asks for
          # (crane docs/API.md); rust-toolchain.toml is the pin rustup reads too.
          craneLib = (crane.mkLib pkgs).overrideToolchain (
            p: p.rust-bin.fromRustupToolchainFile ./rust-toolchain.toml
          );
          revision = self.rev or "dirty";
          package = pkgs.callPackage ./nix/package.nix { inherit craneLib revision; };
          # Container images are Linux binaries: image and deploy exist on Linux systems only.
          image = pkgs.callPackage ./nix/image.nix {
            inherit package revision;
            lastModifiedDate = self.lastModifiedDate or "19700101000001";
          };
          deploy = pkgs.callPackage ./nix/deploy.nix { inherit image; };
          onLinux = lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux;
          app = drv: description: {
            type = "app";
            program = lib.getExe drv;
            meta = { inherit description; };
          };
        in
        {
          packages = {
            default = package;
          }
          // onLinux { inherit image; };

          apps = {
            default = app package "Run the poem-api server";
          }
          // onLinux { deploy = app deploy "Build the image and deploy it to minikube"; };

          # callPackages (plural): an attribute set of derivations, without the `override` that
          # callPackage would add to the set itself (nixpkgs lib/customisation.nix).
          checks =
            pkgs.callPackages ./nix/checks.nix { inherit craneLib package advisory-db; }
            // onLinux { inherit image deploy; };

          devShells = {
            default = pkgs.callPackage ./nix/shell.nix { inherit package; };
            bench = pkgs.callPackage ./nix/bench-shell.nix { };
          };

          formatter = pkgs.nixfmt;
        };

      outputsBySystem = lib.genAttrs systems perSystem;
      collect = output: lib.mapAttrs (_: outputs: outputs.${output}) outputsBySystem;
    in
    {
      packages = collect "packages";
      apps = collect "apps";
      checks = collect "checks";
      devShells = collect "devShells";
      formatter = collect "formatter";
    };
}
