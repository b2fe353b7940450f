#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from Go modules
# and prints the directory to use as KUBEBUILDER_ASSETS.
#
#   KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go test ./internal/source/kube/...
#
# Nothing but the Go module proxy is used: kube-apiserver comes from
# k8s.io/kubernetes cmd/kube-apiserver (hack/tools/k8s pins every k8s.io
# staging module with replace directives), etcd from
# go.etcd.io/etcd/server/v3/etcdmain (hack/tools/etcd).
#
# Idempotent and cached by version:
#   machine cache  ${XDG_CACHE_HOME:-$HOME/.cache}/meshgate/k8s/<version>/
#   repository     bin/k8s/<version>/   (hard link or copy of the machine cache)
# so a fresh clone on the same machine pays nothing, and a cold build
# (about 8 minutes on 2 cores) happens once per machine and version.
# A binary counts as cached only if it reports the expected version.
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

# The version output is captured before matching: piping it into grep -q
# under pipefail fails at random (grep exits early, the binary gets SIGPIPE).
have_apiserver() {
  local v
  [ -x "$1/kube-apiserver" ] && v=$("$1/kube-apiserver" --version 2>/dev/null) &&
    [ "$v" = "Kubernetes v${K8S_VERSION}" ]
}
have_etcd() {
  local v
  [ -x "$1/etcd" ] && v=$("$1/etcd" --version 2>/dev/null) &&
    [[ "$v" == "etcd Version: ${ETCD_VERSION}"$'\n'* ]]
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

  for b in kube-apiserver etcd; do
    if [ ! -x "$cache_dir/$b" ] && [ -x "$repo_dir/$b" ]; then
      place "$repo_dir/$b" "$cache_dir/$b" # seed the machine cache from bin/
    fi
  done

  if ! have_apiserver "$cache_dir"; then
    log "building kube-apiserver v${K8S_VERSION} (cold: ~8 min on 2 cores)"
    local v=k8s.io/component-base/version
    gobuild "$root/hack/tools/k8s" "$cache_dir/kube-apiserver" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      "-X $v.gitVersion=v${K8S_VERSION} -X $v.gitMajor=1 -X $v.gitMinor=${K8S_MINOR} -X $v.gitTreeState=clean"
    have_apiserver "$cache_dir" || { echo "envtest-assets: kube-apiserver reports a wrong version" >&2; exit 1; }
  fi
  if ! have_etcd "$cache_dir"; then
    log "building etcd v${ETCD_VERSION}"
    gobuild "$root/hack/tools/etcd" "$cache_dir/etcd" .
    have_etcd "$cache_dir" || { echo "envtest-assets: etcd reports a wrong version" >&2; exit 1; }
  fi

  for b in kube-apiserver etcd; do
    if ! cmp -s "$cache_dir/$b" "$repo_dir/$b"; then
      place "$cache_dir/$b" "$repo_dir/$b"
    fi
  done
}

if have_apiserver "$repo_dir" && have_etcd "$repo_dir"; then
  : # warm repository cache: nothing to do
else
  build_all
fi
echo "$repo_dir"
