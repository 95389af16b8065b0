# The text of the deploy script (nix/deploy.nix) with two stand-in images, for .ci/nix.sh, which
# runs it against stub minikube and kubectl commands: Nix 2.8 evaluates this without nixpkgs.
# lib.nix has the few lib functions deploy.nix uses; writeShellApplication is replaced by its own
# argument.
let
  lib = import ./lib.nix;
  image = arch: {
    outPath = "/images/poem-api-${arch}.tar";
    imageName = "poem-api";
    imageTag = "tag-${arch}";
  };
  deploy = import ../deploy.nix {
    inherit lib;
    writeShellApplication = args: args;
    coreutils = null;
    curl = null;
    gnugrep = null;
    kubectl = null;
    minikube = null;
    images = {
      amd64 = image "amd64";
      arm64 = image "arm64";
    };
  };
in
deploy.text
