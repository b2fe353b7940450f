package translate

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// finishGateways renders the status of our Gateways once every route has
// attached (AttachedRoutes is known).
func finishGateways(s *state) {
	sets := finishListenerSets(s)
	for _, gb := range s.gw.gateways {
		gw := gb.gw
		addrs := s.statusAddresses(gb)
		st := GatewayStatus{Addresses: addrs, Listeners: []gatewayv1.ListenerStatus{}}
		valid, programmed := 0, 0
		for _, lb := range gb.listeners {
			if lb.set != nil {
				continue
			}
			st.Listeners = append(st.Listeners, listenerStatus(lb, gw.Generation))
			s.listenerProblems(lb)
			if lb.usable() {
				valid++
			}
			if lb.programmed() {
				programmed++
			}
		}
		if gw.Spec.AllowedListeners != nil {
			n := sets[gb]
			st.AttachedListenerSets = &n
		}
		n := len(st.Listeners)
		acc := cond(gatewayv1.GatewayConditionAccepted, true, gatewayv1.GatewayReasonAccepted, "all listeners are valid", gw.Generation)
		switch {
		case gb.invalidAddress != "":
			acc = cond(gatewayv1.GatewayConditionAccepted, false, gatewayv1.GatewayReasonUnsupportedAddress, gb.invalidAddress, gw.Generation)
		case valid == 0 && n > 0:
			acc = cond(gatewayv1.GatewayConditionAccepted, false, gatewayv1.GatewayReasonListenersNotValid, "no listener is valid", gw.Generation)
		case valid < n:
			acc = cond(gatewayv1.GatewayConditionAccepted, true, gatewayv1.GatewayReasonListenersNotValid, fmt.Sprintf("%d of %d listeners are not valid", n-valid, n), gw.Generation)
		}
		prog := cond(gatewayv1.GatewayConditionProgrammed, true, gatewayv1.GatewayReasonProgrammed, "serving", gw.Generation)
		switch {
		case gb.invalidAddress != "":
			prog = cond(gatewayv1.GatewayConditionProgrammed, false, gatewayv1.GatewayReasonAddressNotUsable, gb.invalidAddress, gw.Generation)
		case gb.addrReason != "":
			prog = cond(gatewayv1.GatewayConditionProgrammed, false, gb.addrReason, gb.addrMsg, gw.Generation)
		case len(addrs) == 0:
			prog = cond(gatewayv1.GatewayConditionProgrammed, false, gatewayv1.GatewayReasonAddressNotAssigned, "meshgate has no address to publish (set --publish-service or --publish-status-address)", gw.Generation)
		case programmed == 0 && n > 0:
			prog = cond(gatewayv1.GatewayConditionProgrammed, false, gatewayv1.GatewayReasonInvalid, "no listener is programmed", gw.Generation)
		}
		st.Conditions = []metav1.Condition{acc, prog}
		s.gw.status.Gateways[key(gw)] = st
	}
}

// listenerStatus renders one listener's status at generation gen.
func listenerStatus(lb *listenerBuild, gen int64) gatewayv1.ListenerStatus {
	acc := cond(gatewayv1.ListenerConditionAccepted, lb.accepted, lb.acceptedReason, lb.acceptedMsg, gen)
	if lb.accepted && acc.Message == "" {
		acc.Message = "listener is valid"
	}
	res := cond(gatewayv1.ListenerConditionResolvedRefs, lb.resolved, lb.resolvedReason, lb.resolvedMsg, gen)
	if lb.resolved {
		res.Message = "all references resolved"
	}
	confl := cond(gatewayv1.ListenerConditionConflicted, false, gatewayv1.ListenerReasonNoConflicts, "no conflict", gen)
	if lb.conflicted {
		confl = cond(gatewayv1.ListenerConditionConflicted, true, lb.conflictReason, lb.conflictMsg, gen)
	}
	prog := cond(gatewayv1.ListenerConditionProgrammed, true, gatewayv1.ListenerReasonProgrammed, "serving", gen)
	if !lb.programmed() {
		prog = cond(gatewayv1.ListenerConditionProgrammed, false, gatewayv1.ListenerReasonInvalid, "listener is not valid", gen)
	}
	return gatewayv1.ListenerStatus{
		Name:           lb.l.Name,
		SupportedKinds: lb.kinds,
		AttachedRoutes: lb.attached,
		Conditions:     []metav1.Condition{acc, confl, res, prog},
	}
}

// listenerProblems reports an invalid listener as a Problem of its Gateway.
func (s *state) listenerProblems(lb *listenerBuild) {
	gw := lb.gb.gw
	switch {
	case !lb.accepted:
		s.problem("Gateway", gw, string(lb.acceptedReason), "listener %s: %s", lb.l.Name, lb.acceptedMsg)
	case lb.conflicted:
		s.problem("Gateway", gw, string(lb.conflictReason), "listener %s: %s", lb.l.Name, lb.conflictMsg)
	}
	if !lb.resolved {
		s.problem("Gateway", gw, string(lb.resolvedReason), "listener %s: %s", lb.l.Name, lb.resolvedMsg)
	}
}
