#!/usr/bin/env bash
# Builds the test cluster's control plane (kube-apiserver,
# kube-controller-manager and etcd) from Go modules and prints the directory
# to use as KUBEBUILDER_ASSETS.
#
#   KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go test ./internal/source/kube/...
#
# Nothing but the Go module proxy is used: kube-apiserver and
# kube-controller-manager come from k8s.io/kubernetes cmd/... (hack/tools/k8s
# pins every k8s.io staging module with replace directives), etcd from
# go.etcd.io/etcd/server/v3/etcdmain (hack/tools/etcd). envtest uses
# kube-apiserver and etcd; test/kubecluster adds kube-controller-manager
# (Deployments, ReplicaSets, EndpointSlices, namespaces) to the same
# control plane.
#
# Idempotent and cached by version:
#   machine cache  ${XDG_CACHE_HOME:-$HOME/.cache}/meshgate/k8s/<version>/
#   repository     bin/k8s/<version>/   (hard link or copy of the machine cache)
# so a fresh clone on the same machine pays nothing, and a cold build
# happens once per machine and version. The two kube binaries are built by
# one `go build`, so the packages they share (most of kube-controller-
# manager's) compile once: about 8 minutes for kube-apiserver alone on 2
# cores, see docs/conformance/README.md for what kube-controller-manager
# adds. A binary counts as cached only if it reports the expected version.
#
# Environment:
#   MESHGATE_CACHE_DIR  overrides the machine cache root
#   ENVTEST_QUIET=1     no progress on stderr
set -euo pipefail

K8S_VERSION=1.37.2
K8S_MINOR=37
ETCD_VERSION=3.7.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${MESHGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate}
key="v${K8S_VERSION}-etcd${ETCD_VERSION}"
cache_dir="$cache_root/k8s/$key"
repo_dir="$root/bin/k8s/$key"

log() { [ "${ENVTEST_QUIET:-}" = 1 ] || echo "envtest-assets: $*" >&2; }

KUBE_BINS=(kube-apiserver kube-controller-manager)
ALL_BINS=("${KUBE_BINS[@]}" etcd)

# have_kube DIR NAME: DIR/NAME is a kube binary of the pinned version.
# The version output is captured before matching: piping it into grep -q
# under pipefail fails at random (grep exits early, the binary gets SIGPIPE).
have_kube() {
  local v
  [ -x "$1/$2" ] && v=$("$1/$2" --version 2>/dev/null) &&
    [ "$v" = "Kubernetes v${K8S_VERSION}" ]
}
have_kube_all() {
  local b
  for b in "${KUBE_BINS[@]}"; do have_kube "$1" "$b" || return 1; done
}
have_etcd() {
  local v
  [ -x "$1/etcd" ] && v=$("$1/etcd" --version 2>/dev/null) &&
    [[ "$v" == "etcd Version: ${ETCD_VERSION}"$'\n'* ]]
}

# gobuild_kube OUTDIR NAME...: builds k8s.io/kubernetes/cmd/NAME for every
# NAME in one `go build` inside hack/tools/k8s (shared packages compile
# once), into a temporary directory first so an interrupted build never
# leaves a bad binary.
gobuild_kube() {
  local out=$1
  shift
  local tmp="$out/.build.$$" v=k8s.io/component-base/version pkgs=() b
  for b in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (
    cd "$root/hack/tools/k8s"
    GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
      go build -trimpath -o "$tmp/" \
      -ldflags "-s -w -X $v.gitVersion=v${K8S_VERSION} -X $v.gitMajor=1 -X $v.gitMinor=${K8S_MINOR} -X $v.gitTreeState=clean" \
      "${pkgs[@]}"
  )
  for b in "$@"; do mv -f "$tmp/$b" "$out/$b"; done
  rm -rf "$tmp"
}

# gobuild DIR OUT PKG [LDFLAGS]: builds PKG inside tools module DIR into OUT
# (via a temporary file, so an interrupted build never leaves a bad binary).
gobuild() {
  local dir=$1 out=$2 pkg=$3 ldflags=${4:-}
  local tmp="$out.tmp.$$"
  (
    cd "$dir"
    GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
      go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp" "$pkg"
  )
  mv -f "$tmp" "$out"
}

# place SRC DST: hard link, or copy across file systems.
place() {
  rm -f "$2"
  ln "$1" "$2" 2>/dev/null || cp "$1" "$2"
}

build_all() {
  mkdir -p "$cache_dir" "$repo_dir"
  # Serialize concurrent callers (parallel test packages, two clones).
  exec 9>"$cache_dir/.lock"
  flock 9

  local b missing=()
  for b in "${ALL_BINS[@]}"; do
    if [ ! -x "$cache_dir/$b" ] && [ -x "$repo_dir/$b" ]; then
      place "$repo_dir/$b" "$cache_dir/$b" # seed the machine cache from bin/
    fi
  done

  for b in "${KUBE_BINS[@]}"; do
    have_kube "$cache_dir" "$b" || missing+=("$b")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "building ${missing[*]} v${K8S_VERSION} (cold: ~8 min for kube-apiserver on 2 cores)"
    gobuild_kube "$cache_dir" "${missing[@]}"
    for b in "${missing[@]}"; do
      have_kube "$cache_dir" "$b" || { echo "envtest-assets: $b reports a wrong version" >&2; exit 1; }
    done
  fi
  if ! have_etcd "$cache_dir"; then
    log "building etcd v${ETCD_VERSION}"
    gobuild "$root/hack/tools/etcd" "$cache_dir/etcd" .
    have_etcd "$cache_dir" || { echo "envtest-assets: etcd reports a wrong version" >&2; exit 1; }
  fi

  for b in "${ALL_BINS[@]}"; do
    if ! cmp -s "$cache_dir/$b" "$repo_dir/$b"; then
      place "$cache_dir/$b" "$repo_dir/$b"
    fi
  done
}

if have_kube_all "$repo_dir" && have_etcd "$repo_dir"; then
  : # warm repository cache: nothing to do
else
  build_all
fi
echo "$repo_dir"
