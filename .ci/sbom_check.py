"""Checks an SBOM of poem-api (cargo-cyclonedx's CycloneDX 1.5 JSON) against the CycloneDX schema
and against cargo's own resolve for the target.

    sbom_check.py SBOM METADATA TARGET

METADATA is `cargo metadata --format-version 1 --filter-platform TARGET`. The crates that end up
in the binary are those reachable from the root package through normal dependencies, as cargo
resolves them for TARGET; build-dependencies (run at build time) and dev-dependencies (tests only)
are not, and neither is anything behind them.
"""

from __future__ import annotations

import json
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator


def compiled_in(metadata: dict) -> set[tuple[str, str]]:
    """(name, version) of every package the root reaches through normal dependencies."""
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    root = metadata["resolve"]["root"]
    seen: set[str] = set()
    todo = [root]
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            # kind null is a normal dependency; --filter-platform already dropped the edges whose
            # `target` cfg does not hold for TARGET.
            if any(k["kind"] is None for k in dep["dep_kinds"]) and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    return {(packages[i]["name"], packages[i]["version"]) for i in seen}


def dev_only(metadata: dict, normal: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Direct dev-dependencies of the root that are not compiled in as well."""
    packages = {p["id"]: p for p in metadata["packages"]}
    root = next(n for n in metadata["resolve"]["nodes"] if n["id"] == metadata["resolve"]["root"])
    dev = {(packages[d["pkg"]]["name"], packages[d["pkg"]]["version"])
           for d in root["deps"] if any(k["kind"] == "dev" for k in d["dep_kinds"])}
    return dev - normal


def main() -> int:
    sbom_path, metadata_path, target = sys.argv[1:4]
    text = open(sbom_path, encoding="utf-8").read()
    failures: list[str] = []

    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    if error is not None:
        failures.append(f"not valid CycloneDX 1.5 JSON: {error}")
    else:
        print("valid CycloneDX 1.5 (strict JSON schema)")

    sbom = json.loads(text)
    metadata = json.load(open(metadata_path, encoding="utf-8"))
    listed = {(c["name"], c["version"]) for c in sbom.get("components", [])}
    expected = compiled_in(metadata)

    props = {p["name"]: p["value"] for p in sbom["metadata"].get("properties", [])}
    if props.get("cdx:rustc:sbom:target:triple") != target:
        failures.append(f"the SBOM is for {props.get('cdx:rustc:sbom:target:triple')}, not {target}")
    root = sbom["metadata"]["component"]
    if root["name"] != "poem-api" or not root.get("licenses"):
        failures.append(f"the described component is {root['name']} without its license")

    if listed - expected:
        failures.append(f"listed but not compiled in: {sorted(listed - expected)}")
    if expected - listed:
        failures.append(f"compiled in but not listed: {sorted(expected - listed)}")
    dev = dev_only(metadata, expected)
    if dev & listed:
        failures.append(f"dev-dependencies listed: {sorted(dev & listed)}")
    for c in sbom.get("components", []):
        name = f"{c['name']}@{c.get('version')}"
        if not c.get("version"):
            failures.append(f"{name}: no version")
        if not c.get("licenses"):
            failures.append(f"{name}: no license")
        if not c.get("purl", "").startswith(f"pkg:cargo/{c['name']}@"):
            failures.append(f"{name}: no cargo purl")
        if not any(h.get("alg") == "SHA-256" for h in c.get("hashes", [])):
            failures.append(f"{name}: no SHA-256 from Cargo.lock")

    lock_packages = len(metadata["packages"])
    print(f"{len(listed)} components for {target}, as cargo resolves them "
          f"({lock_packages} packages in the resolve; {len(dev)} dev-only direct dependencies "
          f"absent: {', '.join(sorted(n for n, _ in dev))})")
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    print(f"sbom: {0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
