# `nix develop`: the toolchain of rust-toolchain.toml, the package's build inputs, and the tools
# of the checks, the deploy and the benchmark.
#
# Not `inputsFrom = [ package ]`: that brings crane's setup hooks into the shell, and at the
# locked crane they run in it: installFromCargoBuildLogHook.sh makes a directory with
# `mktemp -d` and a relative template in the current directory on every `nix develop`, and the
# hooks warn about cargoArtifacts and cargoVendorDir, which a shell does not have (crane issues
# #997, #998, #1046). The shell takes what the build needs directly instead.
{
  mkShell,
  rust-bin,
  package,
  cargo-nextest,
  kubectl,
  minikube,
  kustomize,
  wrk,
  nixfmt-tree,
  deadnix,
  cargo-audit,
  cargo-cyclonedx,
}:
let
  # The pinned toolchain plus the sources and the language server for editors; rust-overlay's
  # toolchains take `override` (rust-overlay lib/rust-bin.nix).
  toolchain = (rust-bin.fromRustupToolchainFile ../rust-toolchain.toml).override (old: {
    extensions = old.extensions ++ [
      "rust-src"
      "rust-analyzer"
    ];
  });
in
mkShell {
  # The libraries the package links (libiconv on macOS, nothing on Linux), without its hooks.
  inherit (package.commonArgs) buildInputs;
  packages = [
    toolchain
    cargo-nextest
    # kubectl before minikube: minikube ships a kubectl link of its own.
    kubectl
    minikube
    kustomize
    wrk
    # `treefmt`, what `nix fmt` runs (flake.nix formatter).
    nixfmt-tree
    deadnix
    cargo-audit
    cargo-cyclonedx
  ];
}
