# The arguments nix/image.nix gives dockerTools.buildLayeredImage, for .ci/nix.sh, which checks
# them against the image contract: Nix 2.8 evaluates this without nixpkgs (lib.nix), with
# buildLayeredImage replaced by its own argument. One image per node architecture, as flake.nix
# makes them.
let
  lib = import ./lib.nix;
  package = {
    version = "0.1.0";
    meta.mainProgram = "poem-api";
  };
  image =
    architecture:
    import ../image.nix {
      inherit lib package architecture;
      dockerTools.buildLayeredImage = args: args;
      revision = "0123abc";
      lastModifiedDate = "20261201112233";
    };
  contract = lib.importJSON ../../container/contract.json;
  expect = what: cond: cond || throw "nix/image.nix: ${what}";
  checked =
    architecture:
    let
      args = image architecture;
    in
    assert expect "the architecture is not ${architecture}" (args.architecture == architecture);
    assert expect "the tag is not left to the build's hash" (args.tag == null);
    assert expect "the archive is compressed" (args.compressor == "none");
    assert expect "the entrypoint is not the contract's" (
      args.config.Entrypoint == contract.entrypoint
    );
    assert expect "the user is not the contract's numeric one" (args.config.User == contract.user);
    assert expect "the creation date is not the commit's" (args.created == "2026-12-01T11:22:33Z");
    assert expect "the revision label is missing" (
      args.config.Labels."org.opencontainers.image.revision" == "0123abc"
    );
    "${architecture}: ${args.name}, ${args.config.User}, ${builtins.toJSON args.config.Entrypoint}";
in
builtins.concatStringsSep "\n" (
  map checked [
    "amd64"
    "arm64"
  ]
)
