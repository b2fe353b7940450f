#!/usr/bin/env bash
# Regenerates what controller-gen derives from source (`make generate`):
#   api/v1alpha1/zz_generated.deepcopy.go   from the API types
#   config/crd/bases/*.yaml                 CRDs with OpenAPI/CEL validation
#   config/crd/gateway-api, charts/meshgate/crds/gateway-api
#                                           Gateway API CRDs from the module
#   config/rbac/role.yaml                   ClusterRole from the
#                                           // +kubebuilder:rbac markers in internal/source/kube
# controller-gen is built from the Go module proxy (hack/controller-gen.sh).
# Idempotent; run it after changing api/ or an rbac marker and commit the result.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cg=$(hack/controller-gen.sh)

"$cg" object paths=./api/...
"$cg" crd paths=./api/... output:crd:artifacts:config=config/crd/bases
if [ -d internal/source/kube ]; then
  "$cg" rbac:roleName=meshgate paths=./internal/source/kube/... output:rbac:artifacts:config=config/rbac
fi
# The Helm chart ships the same CRDs (test/chart fails when they differ).
cp config/crd/bases/*.yaml charts/meshgate/crds/
# The Gateway API CRDs are vendored from the module go.mod pins
# (TestVendoredGatewayAPICRDs fails when they differ).
hack/gateway-api-crds.sh
