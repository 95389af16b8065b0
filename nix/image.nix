# The OCI image: the static binary and nothing else. Its runtime contract (entrypoint, user, ports,
# env) comes from container/contract.json, which the podman container test reads too.
{
  lib,
  dockerTools,
  package,
  revision,
  lastModifiedDate,
  # The image's architecture, as OCI names it (amd64, arm64). dockerTools defaults it to the build
  # machine's; a static binary for another one needs no cross-built image tooling, only this.
  architecture,
}:
let
  contract = lib.importJSON ../container/contract.json;
  cargoToml = lib.importTOML ../Cargo.toml;
  entrypoint = "/bin/${package.meta.mainProgram}";

  # The commit's time ("YYYYMMDDHHMMSS" from the flake) rather than "now": rebuilding a revision
  # gives the same image. Layer mtimes keep dockerTools' fixed default.
  at = start: len: builtins.substring start len lastModifiedDate;
  created = "${at 0 4}-${at 4 2}-${at 6 2}T${at 8 2}:${at 10 2}:${at 12 2}Z";
in
assert lib.assertMsg (lib.head contract.entrypoint == entrypoint)
  "container/contract.json: the entrypoint must start with ${entrypoint}, where the image has the binary";
# buildLayeredImage runs streamLayeredImage's script through `compressor` and passes its imageTag
# on as passthru (nixpkgs pkgs/build-support/docker/default.nix).
dockerTools.buildLayeredImage {
  inherit (contract) name;
  inherit architecture;
  # null: the tag is the hash of the image's configuration derivation, so every different build
  # has its own tag, read by deploy.nix as image.imageTag (never :latest).
  tag = null;
  # A plain docker-archive: `minikube image load` reports success for a gzipped one on the
  # containerd runtime but loads nothing.
  compressor = "none";
  # /bin/poem-api links into the binary's store path; that one path is the whole closure.
  # No shell, libc, CA bundle (the server makes no outbound TLS calls) or /etc.
  contents = [ package ];
  inherit created;
  config = {
    Entrypoint = contract.entrypoint;
    # Numeric, so Kubernetes can check runAsNonRoot without an /etc/passwd.
    User = contract.user;
    ExposedPorts = lib.mapAttrs' (_: port: lib.nameValuePair "${toString port}/tcp" { }) contract.ports;
    Env = lib.mapAttrsToList (name: value: "${name}=${value}") contract.env;
    Labels = {
      "org.opencontainers.image.title" = contract.name;
      "org.opencontainers.image.version" = package.version;
      "org.opencontainers.image.revision" = revision;
      "org.opencontainers.image.source" = cargoToml.package.repository;
    };
  };
}
