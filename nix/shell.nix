# `nix develop`: the toolchain of rust-toolchain.toml, the package's build inputs, and the tools
# of the checks, the deploy and the benchmark.
{
  mkShell,
  rust-bin,
  package,
  cargo-nextest,
  kubectl,
  minikube,
  kustomize,
  wrk,
  nixfmt,
  deadnix,
  cargo-audit,
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
  inputsFrom = [ package ];
  packages = [
    toolchain
    cargo-nextest
    # kubectl before minikube: minikube ships a kubectl link of its own.
    kubectl
    minikube
    kustomize
    wrk
    nixfmt
    deadnix
    cargo-audit
  ];
}
