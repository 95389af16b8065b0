# `nix run .#deploy`: load this build's image for the architecture of minikube's node into
# minikube, apply k8s/overlays/minikube with the build's own tag, wait for the rollout and call the
# Service. Building this app builds every image it can load (one per architecture).
# Names shared with k8s/: namespace, Deployment and Service `poem-api`, and the container image
# `poem-api` (the overlay's `images:` entry), retagged here.
{
  lib,
  writeShellApplication,
  coreutils,
  curl,
  gnugrep,
  kubectl,
  minikube,
  # Kubernetes architecture name (a node's status.nodeInfo.architecture) -> image of that one.
  images,
}:
let
  inherit (lib)
    attrNames
    concatMapStrings
    concatStringsSep
    escapeShellArg
    ;
  known = concatStringsSep ", " (attrNames images);
  # One case branch per image: sets image and tag for that architecture.
  pickImage = concatMapStrings (arch: ''
    ${arch})
      image=${images.${arch}}
      tag=${escapeShellArg images.${arch}.imageTag}
      ;;
  '') (attrNames images);
  # Every image is named after container/contract.json; take the name from any one.
  imageName = (lib.head (lib.attrValues images)).imageName;
in
writeShellApplication {
  name = "poem-api-deploy";
  # kubectl before minikube: minikube ships a kubectl link of its own.
  runtimeInputs = [
    coreutils
    curl
    gnugrep
    kubectl
    minikube
  ];
  text = ''
    imageName=${escapeShellArg imageName}
    namespace=poem-api
    timeout=''${ROLLOUT_TIMEOUT:-180s}

    step() { printf '\n==> %s\n' "$*"; }
    fail() {
      printf '\nerror: %s\n' "$*" >&2
      exit 1
    }

    work=$(mktemp -d)
    tunnel=
    cleanup() {
      if [ -n "$tunnel" ]; then kill "$tunnel" 2>/dev/null || true; fi
      rm -rf "$work"
    }
    trap cleanup EXIT

    profile=$(minikube profile 2>/dev/null | tail -n 1) || true
    profile=''${profile:-minikube}

    step "Checking minikube profile '$profile' and the kubectl context"
    if ! status=$(minikube -p "$profile" status 2>&1); then
      printf '%s\n' "$status" >&2
      fail "minikube ('$profile') is not running: start it with 'minikube start -p $profile'"
    fi
    context=$(kubectl config current-context 2>/dev/null) || true
    if [ "$context" != "$profile" ]; then
      fail "kubectl's current context is '$context', not minikube's '$profile': switch with 'kubectl config use-context $profile'"
    fi

    step "Choosing the image for the architecture of minikube's nodes"
    arches=$(kubectl get nodes -o jsonpath='{range .items[*]}{.status.nodeInfo.architecture}{"\n"}{end}' | sort -u) ||
      fail "cannot list the nodes of minikube ('$profile') with kubectl"
    count=$(printf '%s\n' "$arches" | grep -c . || true)
    case $count in
      0) fail "minikube ('$profile') has no nodes" ;;
      1) arch=$arches ;;
      *) fail "minikube ('$profile') has nodes of several architectures ($(printf '%s' "$arches" | tr '\n' ' ')); this deploy loads one image" ;;
    esac
    case $arch in
    ${pickImage}
    *) fail "minikube's node is $arch; this flake builds images for ${known} only" ;;
    esac
    ref=$imageName:$tag
    printf '%s: %s\n' "$arch" "$image"

    step "Loading image $ref into minikube"
    if ! minikube -p "$profile" image load "$image"; then
      fail "minikube image load of $image failed (its output is above); is there room on the node ('minikube ssh -p $profile df -h')?"
    fi
    if ! minikube -p "$profile" image ls | grep -qF "$ref"; then
      fail "minikube image load reported success, but $ref is not among minikube's images"
    fi

    step "Rendering k8s/overlays/minikube with image $ref"
    # The overlay as the one resource of a kustomization that only retags the image: the same
    # images transformer as `kustomize edit set image`, with k8s/ left as it is. kustomize takes
    # a directory resource only by a relative path, hence the copy.
    cp -R ${../k8s} "$work/k8s"
    chmod -R u+w "$work/k8s"
    mkdir "$work/deploy"
    cat >"$work/deploy/kustomization.yaml" <<EOF
    apiVersion: kustomize.config.k8s.io/v1beta1
    kind: Kustomization
    resources:
      - ../k8s/overlays/minikube
    images:
      - name: $imageName
        newTag: $tag
    EOF
    if ! kubectl kustomize "$work/deploy" >"$work/manifests.yaml"; then
      fail "kubectl kustomize could not render the overlay (its error is above)"
    fi
    if ! grep -qF "image: $ref" "$work/manifests.yaml"; then
      fail "the rendered overlay does not run $ref: is its container image named '$imageName'?"
    fi

    step "Applying to namespace $namespace"
    if ! kubectl apply -f "$work/manifests.yaml"; then
      fail "kubectl apply of the rendered overlay failed (its error is above)"
    fi

    step "Waiting for deployment/poem-api to roll out (at most $timeout, ROLLOUT_TIMEOUT)"
    if ! kubectl -n "$namespace" rollout status deployment/poem-api --timeout="$timeout"; then
      {
        printf '\nPods and their events in namespace %s:\n' "$namespace"
        kubectl -n "$namespace" get pods -o wide || true
        kubectl -n "$namespace" describe pods || true
        printf '\nRecent events in namespace %s:\n' "$namespace"
        kubectl -n "$namespace" get events --sort-by=.lastTimestamp || true
      } >&2
      fail "deployment/poem-api did not become ready within $timeout (events above)"
    fi

    step "Smoke test: GET / through service/poem-api"
    # With the docker driver on macOS `minikube service --url` keeps a tunnel open and prints the
    # URL while it runs, so it runs in the background until the test is done.
    minikube -p "$profile" service poem-api -n "$namespace" --url >"$work/url" 2>"$work/service.log" &
    tunnel=$!
    for _ in $(seq 30); do
      if grep -q '^http' "$work/url" || ! kill -0 "$tunnel" 2>/dev/null; then break; fi
      sleep 1
    done
    url=$(grep -m 1 '^http' "$work/url") || {
      cat "$work/service.log" >&2
      fail "minikube service poem-api -n $namespace --url gave no URL"
    }
    printf 'GET %s/\n' "$url"
    curl --fail --silent --show-error --max-time 5 --retry 10 --retry-delay 1 --retry-connrefused "$url/" ||
      fail "GET $url/ failed"
    printf '\n\nDeployed %s to namespace %s: %s\n' "$ref" "$namespace" "$url"
  '';
}
