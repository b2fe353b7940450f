package translate

import (
	"fmt"
	"slices"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// App protocols of Service ports that select the upstream protocol
// (KEP-3726 standard names).
const (
	appProtocolH2C = "kubernetes.io/h2c"
	appProtocolWS  = "kubernetes.io/ws"
	appProtocolWSS = "kubernetes.io/wss"
)

// gwBackend resolves a backendRef of a route of kind routeKind. The
// backend is nil when the reference is unusable; then reason and msg say why
// (for ResolvedRefs) and requests for it get 500. defaultProto is the
// protocol spoken to backends whose port names none (h2c for GRPCRoute).
func (s *state) gwBackend(routeKind string, route metav1.Object, ref gatewayv1.BackendObjectReference, defaultProto routing.Protocol, timeout time.Duration) (*routing.Backend, gatewayv1.RouteConditionReason, string) {
	return s.gwSessionBackend(routeKind, route, ref, defaultProto, timeout, routing.CookieAffinity{})
}

// gwSessionBackend is gwBackend for a rule with session persistence
// (aff; the zero value: none), which makes the backend one of its own.
func (s *state) gwSessionBackend(routeKind string, route metav1.Object, ref gatewayv1.BackendObjectReference, defaultProto routing.Protocol, timeout time.Duration, aff routing.CookieAffinity) (*routing.Backend, gatewayv1.RouteConditionReason, string) {
	group, kind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := route.GetNamespace()
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	if group != "" || kind != "Service" {
		return nil, gatewayv1.RouteReasonInvalidKind, fmt.Sprintf("backendRef %s/%s %s: only core Services are supported", group, kind, ref.Name)
	}
	if ns != route.GetNamespace() && !s.granted(fromRef{group: gatewayGroup, kind: routeKind, ns: route.GetNamespace()},
		toRef{group: "", kind: "Service", ns: ns, name: string(ref.Name)}) {
		return nil, gatewayv1.RouteReasonRefNotPermitted, fmt.Sprintf("backendRef to Service %s/%s is not permitted by a ReferenceGrant", ns, ref.Name)
	}
	if ref.Port == nil {
		return nil, gatewayv1.RouteReasonUnsupportedValue, fmt.Sprintf("backendRef to Service %s/%s names no port", ns, ref.Name)
	}
	svc, err := s.c.LookupService(ns, string(ref.Name))
	if err != nil {
		return nil, gatewayv1.RouteReasonBackendNotFound, err.Error()
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == *ref.Port })
	if i < 0 {
		return nil, gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("Service %s/%s has no port %d", ns, ref.Name, *ref.Port)
	}
	proto, ok := portProtocol(svc.Spec.Ports[i], defaultProto)
	if !ok {
		return nil, gatewayv1.RouteReasonUnsupportedProtocol, fmt.Sprintf("Service %s/%s port %d: appProtocol %q is not supported", ns, ref.Name, *ref.Port, *svc.Spec.Ports[i].AppProtocol)
	}
	set := backendSettings{protocol: proto, readTimeout: timeout, affinity: aff}
	if bb, used := s.backendTLSFor(ns, string(ref.Name), svc.Spec.Ports[i]); used {
		if bb == nil {
			// An invalid BackendTLSPolicy: never fall back to the clear
			// or to unverified TLS; connections are refused (503).
			return &routing.Backend{Name: fmt.Sprintf("%s/%s:%d (invalid BackendTLSPolicy)", ns, ref.Name, *ref.Port), Endpoints: []string{}}, "", ""
		}
		set.protocol, set.tls = routing.ProtocolHTTPS, bb.tls
	}
	b := s.serviceBackend(routeKind, route, "backendRef", ns, string(ref.Name), networkingv1.ServiceBackendPort{Number: *ref.Port}, set)
	return b, "", ""
}

// portProtocol maps a Service port's appProtocol to the upstream protocol;
// ok is false for an appProtocol meshgate cannot speak.
func portProtocol(p corev1.ServicePort, def routing.Protocol) (routing.Protocol, bool) {
	if p.AppProtocol == nil {
		return def, true
	}
	switch *p.AppProtocol {
	case appProtocolH2C:
		return routing.ProtocolH2C, true
	case appProtocolWS, "http", "HTTP":
		return "", true
	case appProtocolWSS, "https", "HTTPS":
		return routing.ProtocolHTTPS, true
	case "grpc":
		return routing.ProtocolH2C, true
	}
	return def, true // other names (e.g. "tcp", vendor prefixes) say nothing about HTTP
}

// weightOf returns a backendRef's weight (default 1).
func weightOf(w *int32) uint32 {
	if w == nil {
		return 1
	}
	if *w < 0 {
		return 0
	}
	return uint32(*w)
}

// parseGWDuration parses a Gateway API duration (GEP-2257: a subset of Go
// durations, "0s" meaning no timeout).
func parseGWDuration(d *gatewayv1.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q", *d)
	}
	return v, nil
}
