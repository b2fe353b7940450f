#!/usr/bin/env bash
# Builds the stand-ins for the container images the conformance suites
# deploy, and prints the directory holding them:
#
#   echo-basic   the Gateway API conformance echo server,
#                sigs.k8s.io/gateway-api/conformance/echo-basic (hack/tools/gateway)
#
# The test cluster's node agent (test/nodeagent) runs them for
# registry.k8s.io/gateway-api/echo-basic:* and the Ingress conformance echo
# image (see test/kubecluster). Stand-ins of our own (test/images/...) are
# built from this module by the tests themselves.
#
# Idempotent and cached by version, like hack/envtest-assets.sh:
#   machine cache  ${XDG_CACHE_HOME:-$HOME/.cache}/meshgate/images/<key>/
#   repository     bin/images/<key>/
# A binary counts as cached only if its embedded build information names
# the expected module version.
#
# Environment:
#   MESHGATE_CACHE_DIR  overrides the machine cache root
#   IMAGES_QUIET=1      no progress on stderr
set -euo pipefail

GATEWAY_API_VERSION=v1.6.3

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${MESHGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate}
key="gateway-api-${GATEWAY_API_VERSION}"
cache_dir="$cache_root/images/$key"
repo_dir="$root/bin/images/$key"

log() { [ "${IMAGES_QUIET:-}" = 1 ] || echo "conformance-images: $*" >&2; }

# have_echo DIR: DIR/echo-basic was built from the pinned conformance module.
# (Output captured before matching: see hack/envtest-assets.sh.)
have_echo() {
  local v
  [ -x "$1/echo-basic" ] && v=$(go version -m "$1/echo-basic" 2>/dev/null) &&
    [[ "$v" == *$'\tmod\tsigs.k8s.io/gateway-api/conformance\t'"${GATEWAY_API_VERSION}"$'\t'* ]]
}

place() {
  rm -f "$2"
  ln "$1" "$2" 2>/dev/null || cp "$1" "$2"
}

if ! have_echo "$repo_dir"; then
  mkdir -p "$cache_dir" "$repo_dir"
  exec 9>"$cache_dir/.lock"
  flock 9
  if [ ! -x "$cache_dir/echo-basic" ] && [ -x "$repo_dir/echo-basic" ]; then
    place "$repo_dir/echo-basic" "$cache_dir/echo-basic"
  fi
  if ! have_echo "$cache_dir"; then
    log "building echo-basic from sigs.k8s.io/gateway-api/conformance ${GATEWAY_API_VERSION}"
    tmp="$cache_dir/echo-basic.tmp.$$"
    (
      cd "$root/hack/tools/gateway"
      GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
        go build -trimpath -ldflags "-s -w" -o "$tmp" sigs.k8s.io/gateway-api/conformance/echo-basic
    )
    mv -f "$tmp" "$cache_dir/echo-basic"
    have_echo "$cache_dir" || { echo "conformance-images: echo-basic has unexpected build information" >&2; exit 1; }
  fi
  place "$cache_dir/echo-basic" "$repo_dir/echo-basic"
fi
echo "$repo_dir"
