package translate

import (
	"fmt"
	"slices"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// gwPolicies are the TLSPolicies attached to our Gateways by targetRefs.
type gwPolicies struct {
	listener map[*listenerBuild]*routing.TLSPolicy
	gateway  map[*gatewayBuild]*routing.TLSPolicy
}

// attachTLSPolicies resolves the targetRefs of every TLSPolicy, oldest
// first: a policy naming a listener claims it, one naming a Gateway claims
// all its HTTPS listeners; a later policy claiming the same is Conflicted.
// The outcome per target goes to status.ancestors.
func attachTLSPolicies(s *state) {
	s.gw.policies = gwPolicies{listener: map[*listenerBuild]*routing.TLSPolicy{}, gateway: map[*gatewayBuild]*routing.TLSPolicy{}}
	pols := slices.Clone(s.c.TLSPolicies())
	slices.SortStableFunc(pols, func(a, b *v1alpha1.TLSPolicy) int { return compareAge(a, b) })
	for _, p := range pols {
		if len(p.Spec.TargetRefs) == 0 {
			continue
		}
		r := s.policies[key(p)]
		var ancestors []v1alpha1.PolicyAncestorStatus
		for _, ref := range p.Spec.TargetRefs {
			ok, reason, msg := s.attachTLSPolicy(p, r, ref)
			ancestors = append(ancestors, v1alpha1.PolicyAncestorStatus{
				AncestorRef: ref, ControllerName: s.opts.GatewayControllerName,
				Conditions: []metav1.Condition{cond(gatewayv1.PolicyConditionAccepted, ok, reason, msg, p.Generation)},
			})
			if !ok {
				s.problem("TLSPolicy", p, string(reason), "targetRef %s/%s: %s", ref.Name, ref.SectionName, msg)
			}
		}
		s.gw.status.TLSPolicies[key(p)] = ancestors
	}
}

func (s *state) attachTLSPolicy(p *v1alpha1.TLSPolicy, r policyResult, ref v1alpha1.PolicyTargetReference) (bool, gatewayv1.PolicyConditionReason, string) {
	if r.err != nil {
		return false, gatewayv1.PolicyReasonInvalid, r.err.Error()
	}
	if ref.Group != gatewayGroup || ref.Kind != "Gateway" {
		return false, gatewayv1.PolicyReasonInvalid, fmt.Sprintf("target %s/%s is not a Gateway", ref.Group, ref.Kind)
	}
	gb := s.gw.byName[types.NamespacedName{Namespace: p.Namespace, Name: ref.Name}]
	if gb == nil {
		return false, gatewayv1.PolicyReasonTargetNotFound, fmt.Sprintf("no Gateway %s of a meshgate GatewayClass in namespace %s", ref.Name, p.Namespace)
	}
	if ref.SectionName == "" {
		if prev := s.gw.policies.gateway[gb]; prev != nil {
			return false, gatewayv1.PolicyReasonConflicted, fmt.Sprintf("TLSPolicy %s already applies to Gateway %s", prev.Name, ref.Name)
		}
		s.gw.policies.gateway[gb] = r.policy
		return true, gatewayv1.PolicyReasonAccepted, "applies to the Gateway's HTTPS listeners"
	}
	i := slices.IndexFunc(gb.listeners, func(lb *listenerBuild) bool { return lb.set == nil && string(lb.l.Name) == ref.SectionName })
	if i < 0 {
		return false, gatewayv1.PolicyReasonTargetNotFound, fmt.Sprintf("Gateway %s has no listener %s", ref.Name, ref.SectionName)
	}
	lb := gb.listeners[i]
	if lb.l.Protocol != gatewayv1.HTTPSProtocolType {
		return false, gatewayv1.PolicyReasonInvalid, fmt.Sprintf("listener %s is %s, not HTTPS: meshgate does not terminate its TLS", ref.SectionName, lb.l.Protocol)
	}
	if prev := s.gw.policies.listener[lb]; prev != nil {
		return false, gatewayv1.PolicyReasonConflicted, fmt.Sprintf("TLSPolicy %s already applies to listener %s", prev.Name, ref.SectionName)
	}
	s.gw.policies.listener[lb] = r.policy
	return true, gatewayv1.PolicyReasonAccepted, "applies to the listener"
}

// listenerPolicy is the TLS policy an HTTPS listener serves with.
func (s *state) listenerPolicy(lb *listenerBuild) *routing.TLSPolicy {
	if p := s.gw.policies.listener[lb]; p != nil {
		return p
	}
	if p := s.gw.policies.gateway[lb.gb]; p != nil {
		return p
	}
	return s.defaultPolicy
}
