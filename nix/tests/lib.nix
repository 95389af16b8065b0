# The few nixpkgs lib functions that flake.nix and the files of nix/ use,
# with nixpkgs' meaning (lib/attrsets.nix, lib/strings.nix, lib/lists.nix, lib/trivial.nix,
# lib/asserts.nix), for the tests in this directory, which Nix 2.8 evaluates without nixpkgs.
let
  inherit (builtins)
    attrNames
    listToAttrs
    readFile
    ;
  escapeShellArg = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] s}'";
in
{
  inherit (builtins)
    attrValues
    concatStringsSep
    head
    ;
  inherit (builtins) mapAttrs replaceStrings;
  inherit attrNames;
  genAttrs =
    names: f:
    listToAttrs (
      map (name: {
        inherit name;
        value = f name;
      }) names
    );
  optionalAttrs = cond: set: if cond then set else { };
  optionals = cond: list: if cond then list else [ ];
  getExe = drv: "${drv}/bin/${drv.meta.mainProgram}";
  fileset = {
    toSource = { root, fileset }: { inherit root fileset; };
    unions = list: list;
  };
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
