package translate

import (
	"slices"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// SupportedFeatures are the Gateway API features meshgate implements, as
// published in GatewayClass status and claimed in conformance runs. A
// feature is listed only when its conformance tests pass.
var SupportedFeatures = []features.FeatureName{
	features.SupportGateway,
	features.SupportReferenceGrant,
	features.SupportHTTPRoute,
	features.SupportGRPCRoute,
	features.SupportTLSRoute,
	// TCPRoute and UDPRoute: every GATEWAY-TCP and GATEWAY-UDP test passes.
	features.SupportTCPRoute,
	features.SupportUDPRoute,

	// Extended features, each claimed once the suite's tests of it passed
	// (docs/conformance/README.md). Not claimed: BackendTLSPolicy (its
	// test of a changed CA ConfigMap fails), GatewayHTTPListenerIsolation
	// (fails), HTTPRouteDestinationPortMatching, CORS and Retry (not
	// implemented).
	// TLS listeners in mode Terminate, alone and beside Passthrough ones
	// on one port.
	features.SupportTLSRouteModeTerminate,
	features.SupportTLSRouteModeMixed,
	// Listeners on any port (Gateways on addresses of their own).
	features.SupportHTTPRouteParentRefPort,
	features.SupportGatewayPort8080,
	features.SupportHTTPRouteQueryParamMatching,
	features.SupportHTTPRouteMethodMatching,
	features.SupportHTTPRouteResponseHeaderModification,
	features.SupportHTTPRouteBackendRequestHeaderModification,
	features.SupportHTTPRoutePortRedirect,
	features.SupportHTTPRouteSchemeRedirect,
	features.SupportHTTPRoutePathRedirect,
	features.SupportHTTPRouteHostRewrite,
	features.SupportHTTPRoutePathRewrite,
	features.SupportHTTPRouteRequestMirror,
	features.SupportHTTPRouteRequestMultipleMirrors,
	features.SupportHTTPRouteRequestPercentageMirror,
	features.SupportHTTPRoute303RedirectStatusCode,
	features.SupportHTTPRoute307RedirectStatusCode,
	features.SupportHTTPRoute308RedirectStatusCode,
	features.SupportHTTPRouteRequestTimeout,
	features.SupportHTTPRouteBackendTimeout,
	features.SupportHTTPRouteBackendProtocolH2C,
	features.SupportHTTPRouteBackendProtocolWebSocket,
	features.SupportHTTPRouteNamedRouteRule,
	features.SupportGRPCRouteNamedRouteRule,
}

// supportedFeatureList renders SupportedFeatures for GatewayClass status,
// sorted by name as the API requires.
func supportedFeatureList() []gatewayv1.SupportedFeature {
	out := make([]gatewayv1.SupportedFeature, 0, len(SupportedFeatures))
	for _, f := range SupportedFeatures {
		out = append(out, gatewayv1.SupportedFeature{Name: gatewayv1.FeatureName(f)})
	}
	slices.SortFunc(out, func(a, b gatewayv1.SupportedFeature) int { return compareStrings(string(a.Name), string(b.Name)) })
	return out
}
