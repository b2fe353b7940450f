// Package chart tests the meshgate Helm chart (charts/meshgate): it renders
// the chart with the Helm SDK for default and non-default values, lints it,
// keeps its CRDs and RBAC in step with config/, and applies every rendered
// object with a server-side dry run to a real kube-apiserver (envtest).
//
// This is its own Go module so that the Helm SDK's dependency tree never
// touches the main module's go.mod. Run it with
//
//	cd test/chart && KUBEBUILDER_ASSETS="$(../../hack/envtest-assets.sh)" go test ./...
package chart
