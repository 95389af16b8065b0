# The few nixpkgs lib functions that the files under test (deploy, image, sbom) use,
# with nixpkgs' meaning (lib/attrsets.nix, lib/strings.nix, lib/lists.nix, lib/trivial.nix,
# lib/asserts.nix), for the tests in this directory, which Nix 2.8 evaluates without nixpkgs.
let
  inherit (builtins)
    attrNames
    listToAttrs
    readFile
    replaceStrings
    ;
  escapeShellArg = s: "'${replaceStrings [ "'" ] [ "'\\''" ] s}'";
in
{
  inherit (builtins)
    attrValues
    concatStringsSep
    head
    ;
  inherit attrNames;
  concatMapStrings = f: list: builtins.concatStringsSep "" (map f list);
  inherit escapeShellArg;
  escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);
  versions.majorMinor =
    v:
    let
      parts = builtins.splitVersion v;
    in
    "${builtins.elemAt parts 0}.${builtins.elemAt parts 1}";
  importJSON = path: builtins.fromJSON (readFile path);
  importTOML = path: builtins.fromTOML (readFile path);
  assertMsg = pred: msg: pred || throw msg;
  nameValuePair = name: value: { inherit name value; };
  mapAttrs' = f: set: listToAttrs (map (name: f name set.${name}) (attrNames set));
  mapAttrsToList = f: set: map (name: f name set.${name}) (attrNames set);
}
