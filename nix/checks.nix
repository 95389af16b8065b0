# `nix flake check`: the gates of .ci/run, reusing the dependencies the package built once
# (crane examples/quick-start). flake.nix adds the SBOM, and on Linux the images and the deploy
# script.
{
  lib,
  stdenv,
  runCommand,
  file,
  writeClosure,
  craneLib,
  package,
  advisory-db,
  # Linux: the static binary of each node architecture (flake.nix), by architecture.
  binaries,
}:
let
  inherit (package) commonArgs cargoArtifacts testSrc;
  sourceOnly = {
    inherit (commonArgs) src pname version;
  };
  # The advisories .ci/audit.sh ignores, each with its reason in deny.toml: one list for both.
  ignoredAdvisories = map (entry: entry.id or entry) (lib.importTOML ../deny.toml).advisories.ignore;
in
{
  build = package;

  clippy = craneLib.cargoClippy (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--all-targets -- --deny warnings";
    }
  );

  fmt = craneLib.cargoFmt sourceOnly;

  # Every test except the #[ignore]d ones, which need podman or kubectl (absent from the build
  # sandbox): nextest, like cargo test, skips ignored tests unless asked; .ci/run runs them.
  nextest = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      src = testSrc;
    }
  );

  # RustSec advisories against Cargo.lock, from the advisory-db flake input (the snapshot
  # .ci/audit.sh reads from shared/advisory-db).
  audit = craneLib.cargoAudit (
    sourceOnly
    // {
      inherit advisory-db;
      # crane's default, then deny.toml's ignores.
      cargoAuditExtraArgs = lib.concatStringsSep " " (
        [ "--ignore yanked" ] ++ map (id: "--ignore ${id}") ignoredAdvisories
      );
    }
  );
}
// lib.optionalAttrs stdenv.hostPlatform.isLinux (
  lib.mapAttrs' (
    arch: binary:
    # What the images rely on: each binary is static and refers to no other store path, so an
    # image's closure is this one path. `file` reads the ELF header of any architecture, so the
    # cross-built one is checked too, for its architecture as well.
    let
      machine =
        {
          amd64 = "x86-64";
          arm64 = "ARM aarch64";
        }
        .${arch};
    in
    lib.nameValuePair "static-${arch}" (
      runCommand "${binary.name}-static-${arch}"
        {
          nativeBuildInputs = [ file ];
          closure = writeClosure [ binary ];
        }
        ''
          if [ "$(wc -l <"$closure")" != 1 ]; then
            echo "the closure of ${binary} is more than the binary:" >&2
            cat "$closure" >&2
            exit 1
          fi
          description=$(file --brief --dereference ${lib.getExe binary})
          echo "$description"
          case $description in
            *"${machine}"*static*) touch $out ;;
            *) echo "not a static ${machine} executable" >&2; exit 1 ;;
          esac
        ''
    )
  ) binaries
)
