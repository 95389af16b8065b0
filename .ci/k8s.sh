#!/usr/bin/env bash
# Kubernetes manifests: render every kustomize tree, validate each strictly against the schemas
# of the Kubernetes versions in use today (custom resources against their CRDs' schemas), scan
# each overlay with checkov (0 failed checks; a skip only as an annotated exception), check the
# manifests against the server's configuration (tests/k8s), then run the container contract
# test (.ci/container.sh).
#
# Runs on a fresh Debian 12 machine as root; installs what it needs, idempotently.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned tool versions. kubernetes-validate bundles the schemas it validates against.
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
# Kubernetes minor versions to validate against: the releases clusters run today.
KUBERNETES_VERSIONS=(1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0)
# components/tracing: the tracing component over the minikube overlay, as tests/k8s renders it.
TREES=(base overlays/minikube overlays/production overlays/production-ingress components/tracing)
# checkov's "default namespace" check cannot pass for the base, which is namespace-agnostic by
# design (`kubectl apply -k k8s/base -n <ns>`); the overlays, which are deployed, are scanned.
SCANNED=(overlays/minikube overlays/production overlays/production-ingress components/tracing)
# The kustomization each tree renders from.
source_of() {
  case $1 in
    components/tracing) echo tests/k8s/tracing-overlay ;;
    *) echo "k8s/$1" ;;
  esac
}
# API groups of custom resources. kubernetes-validate has no schema for them (it would only
# warn and pass), so they are split off and validated by tests/k8s/crd/validate.mjs against
# their CRDs' schemas.
CUSTOM_GROUPS='monitoring.coreos.com gateway.networking.k8s.io'

step() { printf '\n==> %s\n' "$*"; }

command -v kubectl >/dev/null || { echo "kubectl (with kustomize) is required" >&2; exit 1; }

step "tools: .venv with kubernetes-validate ${KUBERNETES_VALIDATE_VERSION}, checkov ${CHECKOV_VERSION}"
[ -x .venv/bin/python ] || python3 -m venv .venv
installed() { [[ "$(.venv/bin/python -m pip show "$1" 2>/dev/null)" == *$'\n'"Version: $2"$'\n'* ]]; }
if ! installed kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" || ! installed checkov "$CHECKOV_VERSION"; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}" "checkov==${CHECKOV_VERSION}"
fi

step "tools: CRD schemas and TypeScript, pinned in tests/k8s/crd/package-lock.json"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
# Installed outside the tree (the target directory is ignored by git); node resolves packages
# from the script's own folder, so the script is copied there too.
crd=${CARGO_TARGET_DIR:-$PWD/target}/k8s-crd
mkdir -p "$crd"
cp tests/k8s/crd/package.json tests/k8s/crd/package-lock.json tests/k8s/crd/validate.mjs "$crd/"
(cd "$crd" && npm ci --no-audit --no-fund --loglevel=error)

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT

step "render: kubectl kustomize"
for tree in "${TREES[@]}"; do
  mkdir -p "$rendered/$tree" "$rendered/split/$tree"
  kubectl kustomize "$(source_of "$tree")" >"$rendered/$tree/manifest.yaml"
  # builtin.yaml: the kinds Kubernetes defines; custom.json: the custom resources. In a folder
  # of their own: checkov scans whole folders.
  CUSTOM_GROUPS=$CUSTOM_GROUPS .venv/bin/python - "$rendered/$tree/manifest.yaml" "$rendered/split/$tree" <<'PY'
import json, os, sys, yaml
manifest, folder = sys.argv[1:]
custom_groups = os.environ["CUSTOM_GROUPS"].split()
objects = [o for o in yaml.safe_load_all(open(manifest)) if o]
custom = [o for o in objects if o["apiVersion"].split("/")[0] in custom_groups]
builtin = [o for o in objects if o not in custom]
with open(f"{folder}/builtin.yaml", "w") as f:
    yaml.safe_dump_all(builtin, f)
with open(f"{folder}/custom.json", "w") as f:
    json.dump(custom, f)
print(f"{len(objects)} objects: {len(builtin)} built-in, {len(custom)} custom", end="")
PY
  echo " (k8s/$tree)"
done

step "schema: kubernetes-validate --strict (unknown fields fail)"
schemas=$(.venv/bin/python -c 'import kubernetes_validate, os; print(os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema"))')
for version in "${KUBERNETES_VERSIONS[@]}"; do
  # A version missing from the bundle would silently fall back; fail instead.
  [ -d "$schemas/v${version}-local-strict" ] || { echo "no bundled strict schema for $version" >&2; exit 1; }
  for tree in "${TREES[@]}"; do
    # A kind without a schema is only a warning to kubernetes-validate: fail on any output.
    out=$(.venv/bin/kubernetes-validate --strict --quiet --kubernetes-version "$version" "$rendered/split/$tree/builtin.yaml" 2>&1) \
      || { printf '%s\n' "$out" >&2; exit 1; }
    [ -z "$out" ] || { printf 'k8s/%s, Kubernetes %s:\n%s\n' "$tree" "$version" "$out" >&2; exit 1; }
  done
  echo "Kubernetes $version: ${TREES[*]} valid"
done

step "schema: custom resources against their CRDs (model validation + unknown fields)"
for tree in "${TREES[@]}"; do
  if [ "$(cat "$rendered/split/$tree/custom.json")" = "[]" ]; then
    echo "k8s/$tree: no custom resources"
    continue
  fi
  printf 'k8s/%s: ' "$tree"
  node "$crd/validate.mjs" "$rendered/split/$tree/custom.json"
done

step "policy: checkov --framework kubernetes"
for tree in "${SCANNED[@]}"; do
  # Every skip must be an annotation with a reason: checkov.io/skipN: CKV_K8S_NN=<reason>.
  if grep -E 'checkov\.io/skip[0-9]+:' "$rendered/$tree/manifest.yaml" | grep -vqE 'checkov\.io/skip[0-9]+: CKV2?_K8S_[0-9]+=.{10,}'; then
    echo "k8s/$tree: a checkov skip without a reason" >&2
    exit 1
  fi
  .venv/bin/checkov --directory "$rendered/$tree" --framework kubernetes --skip-download --compact --quiet \
    || { echo "k8s/$tree: checkov found failed checks (above)" >&2; exit 1; }
  grep -E 'checkov\.io/skip[0-9]+:' "$rendered/$tree/manifest.yaml" | sed 's/^ */  skipped: /' || true
  echo "k8s/$tree: 0 failed checks"
done

step "manifests against the server: cargo test --test k8s"
cargo test --locked --test k8s -- --ignored

step "container contract"
bash .ci/container.sh
