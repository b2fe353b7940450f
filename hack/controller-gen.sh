#!/usr/bin/env bash
# Builds controller-gen (sigs.k8s.io/controller-tools, version pinned in
# hack/tools/controller-gen/go.mod) into bin/ and prints its path. Cached in
# the machine cache like hack/envtest-assets.sh; only the Go module proxy is
# used.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
moddir="$root/hack/tools/controller-gen"
version=$(awk '$1=="sigs.k8s.io/controller-tools"{print $2}' "$moddir/go.mod")
[ -n "$version" ] || { echo "controller-gen.sh: no controller-tools version in $moddir/go.mod" >&2; exit 1; }
cache_root=${MESHGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate}
cached="$cache_root/controller-gen/$version/controller-gen"
out="$root/bin/controller-gen-$version"

if [ ! -x "$out" ]; then
  mkdir -p "$(dirname "$cached")" "$root/bin"
  if [ ! -x "$cached" ]; then
    echo "controller-gen.sh: building controller-gen $version" >&2
    (
      cd "$moddir"
      GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
        go build -trimpath -o "$cached.tmp.$$" sigs.k8s.io/controller-tools/cmd/controller-gen
    )
    mv -f "$cached.tmp.$$" "$cached"
  fi
  ln -f "$cached" "$out" 2>/dev/null || cp "$cached" "$out"
fi
echo "$out"
