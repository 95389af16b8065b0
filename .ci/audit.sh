#!/usr/bin/env bash
# Dependency checks, offline:
#  - cargo audit against the advisory database at ../shared/advisory-db (no fetch): no known
#    vulnerability, except the advisories deny.toml ignores with a reason;
#  - cargo deny: licenses on the allow-list in deny.toml, crates.io as the only source.
set -euo pipefail
cd "$(dirname "$0")/.."

db=../shared/advisory-db
[ -d "$db" ] || { echo "advisory database missing at $db" >&2; exit 1; }
command -v cargo-audit >/dev/null || cargo install --locked cargo-audit
command -v cargo-deny >/dev/null || cargo install --locked cargo-deny
# cargo deny reads the dependency graph with `cargo metadata --offline`: every crate in Cargo.lock
# must be in the local registry cache (a no-op when it is).
cargo fetch --locked --quiet

# The ignored quick-xml advisories are unreachable only while poem-api parses no XML: no XML
# extractor or payload (poem::web::Xml, poem_openapi::payload::Xml), no Body::into_xml, no direct
# quick_xml use. If that changes, the ignore is no longer justified.
if grep -rnE '\bXml\b|into_xml|parse_from_xml_string|quick_xml' src/; then
  echo "src/ now parses XML: RUSTSEC-2026-0194/0195 may be reachable; revisit deny.toml" >&2
  exit 1
fi

ignores=()
while read -r id; do ignores+=(--ignore "$id"); done < <(python3 -c '
import tomllib
with open("deny.toml", "rb") as f:
    for entry in tomllib.load(f).get("advisories", {}).get("ignore", []):
        print(entry["id"] if isinstance(entry, dict) else entry)
')

echo "== cargo audit (ignoring: ${ignores[*]:-none})"
cargo audit --no-fetch --db "$db" --deny warnings "${ignores[@]}"

echo "== cargo deny"
cargo deny --offline --locked check licenses bans sources
echo "audit: 2 passed, 0 failed"
