package translate

import (
	"slices"

	"github.com/meshgate/meshgate/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// GatewayStatuses is the status meshgate's leader should write for the
// Gateway API objects of one build. Conditions carry ObservedGeneration
// and no LastTransitionTime (the writer keeps the times of unchanged
// conditions). Only objects meshgate is responsible for appear: GatewayClasses
// with our controllerName, Gateways of those classes, and the parent
// entries of routes (and ancestors of policies) that name them.
type GatewayStatuses struct {
	Classes  map[string]ClassStatus
	Gateways map[types.NamespacedName]GatewayStatus
	// Routes holds, per route, the RouteParentStatus entries with our
	// controllerName (other controllers' entries are theirs to keep).
	Routes map[RouteKey][]gatewayv1.RouteParentStatus
	// ListenerSets maps each ListenerSet attached to one of our Gateways
	// to its status.
	ListenerSets map[types.NamespacedName]gatewayv1.ListenerSetStatus
	// BackendTLSPolicies holds our PolicyAncestorStatus entries per policy.
	BackendTLSPolicies map[types.NamespacedName][]gatewayv1.PolicyAncestorStatus
	// TLSPolicies holds status.ancestors of each TLSPolicy with targetRefs.
	TLSPolicies map[types.NamespacedName][]v1alpha1.PolicyAncestorStatus
}

// ClassStatus is the status of one of our GatewayClasses.
type ClassStatus struct {
	Conditions        []metav1.Condition
	SupportedFeatures []gatewayv1.SupportedFeature
}

// GatewayStatus is the status of one of our Gateways.
type GatewayStatus struct {
	Addresses  []gatewayv1.GatewayStatusAddress
	Conditions []metav1.Condition
	Listeners  []gatewayv1.ListenerStatus
	// AttachedListenerSets counts the ListenerSets accepted by the
	// Gateway; nil when the Gateway allows none.
	AttachedListenerSets *int32
}

// RouteKey names a route of any Gateway API kind.
type RouteKey struct {
	// Kind is "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute" or
	// "UDPRoute".
	Kind string
	types.NamespacedName
}

func newGatewayStatuses() *GatewayStatuses {
	return &GatewayStatuses{
		Classes:            map[string]ClassStatus{},
		Gateways:           map[types.NamespacedName]GatewayStatus{},
		Routes:             map[RouteKey][]gatewayv1.RouteParentStatus{},
		ListenerSets:       map[types.NamespacedName]gatewayv1.ListenerSetStatus{},
		BackendTLSPolicies: map[types.NamespacedName][]gatewayv1.PolicyAncestorStatus{},
		TLSPolicies:        map[types.NamespacedName][]v1alpha1.PolicyAncestorStatus{},
	}
}

// cond builds a condition for an object at generation gen.
func cond[T ~string, R ~string](typ T, ok bool, reason R, msg string, gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: string(typ), Status: st, Reason: string(reason), Message: msg, ObservedGeneration: gen}
}

// SetConditionTimes returns want with each LastTransitionTime taken from the
// condition of the same type in cur when its status did not change, else
// now. cur is not modified.
func SetConditionTimes(cur, want []metav1.Condition, now metav1.Time) []metav1.Condition {
	out := slices.Clone(want)
	for i := range out {
		out[i].LastTransitionTime = now
		for _, c := range cur {
			if c.Type == out[i].Type && c.Status == out[i].Status && !c.LastTransitionTime.IsZero() {
				out[i].LastTransitionTime = c.LastTransitionTime
			}
		}
	}
	return out
}

// ConditionsEqual compares conditions ignoring LastTransitionTime.
func ConditionsEqual(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason &&
			x.Message == y.Message && x.ObservedGeneration == y.ObservedGeneration
	})
}
