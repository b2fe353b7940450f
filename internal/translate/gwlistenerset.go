package translate

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// listenerSetBuild is a ListenerSet whose parent is one of our Gateways.
type listenerSetBuild struct {
	ls        *gatewayv1.ListenerSet
	gb        *gatewayBuild
	allowed   bool
	reason    gatewayv1.ListenerSetConditionReason
	msg       string
	listeners []*listenerBuild
}

// processListenerSets attaches the ListenerSets that name our Gateways,
// oldest first, when the Gateway's spec.allowedListeners admits their
// namespace (default: none). Their listeners follow the Gateway's own in
// precedence, so the Gateway's win conflicts.
func processListenerSets(s *state) {
	s.gw.sets = map[types.NamespacedName]*listenerSetBuild{}
	sets := slices.Clone(s.c.ListenerSets())
	slices.SortStableFunc(sets, func(a, b *gatewayv1.ListenerSet) int { return compareAge(a, b) })
	for _, ls := range sets {
		ref := ls.Spec.ParentRef
		if (ref.Group != nil && *ref.Group != gatewayGroup) || (ref.Kind != nil && *ref.Kind != "Gateway") {
			continue
		}
		ns := ls.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		gb := s.gw.byName[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
		if gb == nil {
			continue
		}
		lsb := &listenerSetBuild{ls: ls, gb: gb, allowed: true, reason: gatewayv1.ListenerSetReasonAccepted, msg: "attached to the Gateway"}
		s.gw.sets[key(ls)] = lsb
		if !s.gatewayAllowsSet(gb.gw, ls.Namespace) {
			lsb.allowed, lsb.reason, lsb.msg = false, gatewayv1.ListenerSetReasonNotAllowed, "the Gateway's spec.allowedListeners does not admit this namespace"
			continue
		}
		for _, e := range ls.Spec.Listeners {
			lb := &listenerBuild{gb: gb, set: ls, l: gatewayv1.Listener{
				Name: e.Name, Hostname: e.Hostname, Port: e.Port, Protocol: e.Protocol, TLS: e.TLS, AllowedRoutes: e.AllowedRoutes,
			}}
			lsb.listeners = append(lsb.listeners, lb)
			gb.listeners = append(gb.listeners, lb)
		}
	}
}

// gatewayAllowsSet applies spec.allowedListeners of gw to a ListenerSet
// in namespace ns.
func (s *state) gatewayAllowsSet(gw *gatewayv1.Gateway, ns string) bool {
	al := gw.Spec.AllowedListeners
	if al == nil || al.Namespaces == nil || al.Namespaces.From == nil {
		return false
	}
	switch *al.Namespaces.From {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSame:
		return ns == gw.Namespace
	case gatewayv1.NamespacesFromSelector:
		if al.Namespaces.Selector == nil {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(al.Namespaces.Selector)
		nsObj := s.c.LookupNamespace(ns)
		return err == nil && nsObj != nil && sel.Matches(labels.Set(nsObj.Labels))
	}
	return false
}

// finishListenerSets writes the status of every ListenerSet attached (or
// refused) by our Gateways, and counts the accepted ones per Gateway.
func finishListenerSets(s *state) map[*gatewayBuild]int32 {
	counts := map[*gatewayBuild]int32{}
	for nn, lsb := range s.gw.sets {
		gen := lsb.ls.Generation
		st := gatewayv1.ListenerSetStatus{}
		if !lsb.allowed {
			st.Conditions = []metav1.Condition{
				cond(gatewayv1.ListenerSetConditionAccepted, false, lsb.reason, lsb.msg, gen),
				cond(gatewayv1.ListenerSetConditionProgrammed, false, lsb.reason, lsb.msg, gen),
			}
			s.gw.status.ListenerSets[nn] = st
			continue
		}
		valid, programmed := 0, 0
		for _, lb := range lsb.listeners {
			ls := listenerStatus(lb, gen)
			st.Listeners = append(st.Listeners, gatewayv1.ListenerEntryStatus{
				Name: ls.Name, SupportedKinds: ls.SupportedKinds, AttachedRoutes: ls.AttachedRoutes, Conditions: ls.Conditions,
			})
			if lb.usable() {
				valid++
			}
			if lb.programmed() {
				programmed++
			}
		}
		accReason, accMsg := gatewayv1.ListenerSetReasonAccepted, "attached to the Gateway"
		if valid < len(lsb.listeners) {
			accReason, accMsg = gatewayv1.ListenerSetReasonListenersNotValid, fmt.Sprintf("%d of %d listeners are not valid", len(lsb.listeners)-valid, len(lsb.listeners))
		}
		progReason, progMsg := gatewayv1.ListenerSetReasonProgrammed, "listeners programmed"
		if programmed == 0 {
			progReason, progMsg = gatewayv1.ListenerSetReasonInvalid, "no listener is programmed"
		}
		st.Conditions = []metav1.Condition{
			cond(gatewayv1.ListenerSetConditionAccepted, valid > 0, accReason, accMsg, gen),
			cond(gatewayv1.ListenerSetConditionProgrammed, programmed > 0, progReason, progMsg, gen),
		}
		if valid > 0 {
			counts[lsb.gb]++
		}
		s.gw.status.ListenerSets[nn] = st
	}
	return counts
}
