# What `nix develop` gets from the package (nix/shell.nix), for .ci/nix.sh: its build inputs and
# nothing that carries crane's setup hooks. Nix 2.8 evaluates this without nixpkgs: mkShell is
# replaced by its own argument, every other input by a marker.
let
  package = {
    name = "the-crane-package";
    commonArgs.buildInputs = [ "the-package's-build-input" ];
  };
  toolchain = {
    override = f: f { extensions = [ ]; };
  };
  args = import ../shell.nix {
    mkShell = a: a;
    rust-bin.fromRustupToolchainFile = _: toolchain;
    inherit package;
    cargo-nextest = "cargo-nextest";
    kubectl = "kubectl";
    minikube = "minikube";
    kustomize = "kustomize";
    wrk = "wrk";
    nixfmt-tree = "nixfmt-tree";
    deadnix = "deadnix";
    cargo-audit = "cargo-audit";
    cargo-cyclonedx = "cargo-cyclonedx";
  };
  inputs = (args.packages or [ ]) ++ (args.nativeBuildInputs or [ ]) ++ (args.buildInputs or [ ]);
in
assert
  !(args ? inputsFrom) || throw "nix/shell.nix: inputsFrom brings crane's hooks into the shell";
assert
  !(builtins.elem package inputs)
  || throw "nix/shell.nix: the crane package is among the shell's inputs";
assert
  (args.buildInputs or [ ]) == package.commonArgs.buildInputs
  || throw "nix/shell.nix: the shell lacks the package's build inputs";
"ok"
