#!/usr/bin/env bash
# Vendors the Gateway API CRDs (standard channel, and the
# ValidatingAdmissionPolicy that guards upgrades) from the module go.mod
# pins, sigs.k8s.io/gateway-api, into
#   config/crd/gateway-api/        everything, for kustomize users and test setups
#   charts/meshgate/crds/gateway-api/ the CRDs only: Helm creates them when
#                                     absent (never changes or deletes existing
#                                     ones); `helm install --skip-crds` opts out
# The files are copied byte for byte; TestVendoredGatewayAPICRDs
# (internal/source/kube) fails when they differ from the module's copy, so
# run this after bumping the module. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)
[ -n "$dir" ] && [ -d "$dir/config/crd/standard" ] || { echo "gateway-api module not found (go mod download sigs.k8s.io/gateway-api)" >&2; exit 1; }
rm -rf config/crd/gateway-api charts/meshgate/crds/gateway-api
mkdir -p config/crd/gateway-api charts/meshgate/crds/gateway-api
cp "$dir"/config/crd/standard/*.yaml config/crd/gateway-api/
cp "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml charts/meshgate/crds/gateway-api/
rm -f charts/meshgate/crds/gateway-api/*_vap_*.yaml
chmod 644 config/crd/gateway-api/*.yaml charts/meshgate/crds/gateway-api/*.yaml
echo "vendored Gateway API $(go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api) CRDs" >&2
