#!/usr/bin/env bash
# Vendors the Gateway API CRDs (standard channel, and the
# ValidatingAdmissionPolicy that guards upgrades) from the module go.mod
# pins, sigs.k8s.io/gateway-api, into
#   config/crd/gateway-api/          for kustomize users and the test setups
#   charts/meshgate/gateway-api-crds/ for the chart (gatewayAPI.installCRDs)
# The files are copied byte for byte; TestVendoredGatewayAPICRDs
# (internal/source/kube) fails when they differ from the module's copy, so
# run this after bumping the module. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)
[ -n "$dir" ] && [ -d "$dir/config/crd/standard" ] || { echo "gateway-api module not found (go mod download sigs.k8s.io/gateway-api)" >&2; exit 1; }
for out in config/crd/gateway-api charts/meshgate/gateway-api-crds; do
  rm -rf "$out"
  mkdir -p "$out"
  cp "$dir"/config/crd/standard/*.yaml "$out"/
  chmod 644 "$out"/*.yaml
done
echo "vendored Gateway API $(go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api) CRDs" >&2
