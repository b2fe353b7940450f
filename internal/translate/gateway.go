package translate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// gwState is the Gateway API part of one build.
type gwState struct {
	classes  map[string]*gatewayv1.GatewayClass // ours and accepted
	gateways []*gatewayBuild                    // ours, oldest first
	byName   map[types.NamespacedName]*gatewayBuild
	status   *GatewayStatuses
	// l4Owners maps the TCP/UDP ports Gateways took to their listener.
	l4Owners map[l4Port]*listenerBuild
	// sets are the ListenerSets naming our Gateways.
	sets map[types.NamespacedName]*listenerSetBuild
	// nextOrder numbers Gateway API route matches for tie-breaking.
	nextOrder int
	// merges are the weighted L4 backends to fill after endpoints.
	merges []l4Merge
	// policies are the TLSPolicies attached by targetRefs.
	policies gwPolicies
	// fronts are the frontends of Gateways with an address of their own,
	// one per address and port of their HTTP, HTTPS and TLS listeners.
	fronts []*frontend

	// btls maps the targets of accepted BackendTLSPolicies to them;
	// btlsAll lists every policy; btlsUsers the Gateways whose routes use
	// each Service; curParents the parents of the route being converted.
	btls       map[btlsTarget]*btlsBuild
	btlsAll    []*btlsBuild
	btlsUsers  map[types.NamespacedName]map[*gatewayBuild]bool
	curParents []*parentResult
}

type l4Port struct {
	addr  netip.Addr // the frontend's; zero: meshgate's own
	proto routing.L4Protocol
	port  int
}

// gatewayBuild is one of our Gateways being built.
type gatewayBuild struct {
	gw        *gatewayv1.Gateway
	listeners []*listenerBuild
	// invalidAddress is set when spec.addresses asks for an address
	// meshgate does not serve (Accepted False, UnsupportedAddress).
	invalidAddress string
	// fe is the frontend the Gateway's listeners are served by: meshgate's
	// own (merged Gateways), or, for a Gateway of its own address, one
	// that holds the address but no table includes (its HTTP, HTTPS and
	// TLS listeners are served by a frontend per port, ports), as for a
	// Gateway without a usable address.
	fe *frontend
	// own reports a Gateway served on an address of its own (fe.addr);
	// ports are its frontends by listener port.
	own   bool
	ports map[int]*frontend
	// addrReason and addrMsg say why a Gateway that needs an address of
	// its own has none (Programmed False: AddressNotAssigned or
	// AddressNotUsable); empty when it has one or is merged.
	addrReason gatewayv1.GatewayConditionReason
	addrMsg    string
}

// served reports whether the Gateway's listeners reach the data plane.
func (gb *gatewayBuild) served() bool { return gb.addrReason == "" && gb.invalidAddress == "" }

// listenerBuild is one Gateway (or ListenerSet) listener being built.
type listenerBuild struct {
	gb  *gatewayBuild
	l   gatewayv1.Listener
	set *gatewayv1.ListenerSet // nil for the Gateway's own listeners

	// kinds are the route kinds the listener accepts (valid ones only).
	kinds []gatewayv1.RouteGroupKind

	accepted, resolved, conflicted bool
	acceptedReason                 gatewayv1.ListenerConditionReason
	acceptedMsg                    string
	resolvedReason                 gatewayv1.ListenerConditionReason
	resolvedMsg                    string
	conflictReason                 gatewayv1.ListenerConditionReason
	conflictMsg                    string

	cert     *tls.Certificate
	attached int32
	// fe is the frontend serving the listener's routes: its Gateway's
	// (gatewayBuild.fe), or, for a usable HTTP, HTTPS or TLS listener of a
	// Gateway of its own address, the frontend of its port.
	fe *frontend
}

// usable reports whether routes may attach and be served.
func (lb *listenerBuild) usable() bool { return lb.accepted && !lb.conflicted }

// programmed reports whether the listener is configured in the data plane.
func (lb *listenerBuild) programmed() bool {
	if !lb.usable() || !lb.gb.served() {
		return false
	}
	if lb.terminates() {
		return lb.cert != nil
	}
	return true
}

// terminates reports whether meshgate terminates the listener's TLS with
// its certificateRefs: HTTPS listeners, and TLS listeners in mode
// Terminate (their TLSRoutes get the decrypted stream).
func (lb *listenerBuild) terminates() bool {
	switch lb.l.Protocol {
	case gatewayv1.HTTPSProtocolType:
		return true
	case gatewayv1.TLSProtocolType:
		return lb.l.TLS != nil && lb.l.TLS.Mode != nil && *lb.l.TLS.Mode == gatewayv1.TLSModeTerminate
	}
	return false
}

func (lb *listenerBuild) hostname() string {
	if lb.l.Hostname == nil {
		return ""
	}
	return strings.ToLower(string(*lb.l.Hostname))
}

// scope is the front end serving the listener's HTTP routes.
func (lb *listenerBuild) scope() routing.Scope {
	if lb.l.Protocol == gatewayv1.HTTPSProtocolType {
		return routing.ScopeTLS
	}
	return routing.ScopePlain
}

const gatewayGroup = gatewayv1.GroupName

// routeKindsFor lists the route kinds a listener protocol supports.
func routeKindsFor(p gatewayv1.ProtocolType) []gatewayv1.Kind {
	switch p {
	case gatewayv1.HTTPProtocolType, gatewayv1.HTTPSProtocolType:
		return []gatewayv1.Kind{"HTTPRoute", "GRPCRoute"}
	case gatewayv1.TLSProtocolType:
		return []gatewayv1.Kind{"TLSRoute"}
	case gatewayv1.TCPProtocolType:
		return []gatewayv1.Kind{"TCPRoute"}
	case gatewayv1.UDPProtocolType:
		return []gatewayv1.Kind{"UDPRoute"}
	}
	return nil
}

// processGatewayClasses accepts the GatewayClasses naming our controller.
func processGatewayClasses(s *state) {
	s.gw = &gwState{
		classes:  map[string]*gatewayv1.GatewayClass{},
		byName:   map[types.NamespacedName]*gatewayBuild{},
		status:   newGatewayStatuses(),
		l4Owners: map[l4Port]*listenerBuild{},
	}
	for _, gc := range s.c.GatewayClasses() {
		if string(gc.Spec.ControllerName) != s.opts.GatewayControllerName {
			continue
		}
		st := ClassStatus{SupportedFeatures: supportedFeatureList()}
		if gc.Spec.ParametersRef != nil {
			st.Conditions = append(st.Conditions, cond(gatewayv1.GatewayClassConditionStatusAccepted, false,
				gatewayv1.GatewayClassReasonInvalidParameters, "meshgate takes no parametersRef; configure it with flags", gc.Generation))
			s.problem("GatewayClass", gc, ReasonUnsupported, "spec.parametersRef is not supported; class not accepted")
		} else {
			st.Conditions = append(st.Conditions, cond(gatewayv1.GatewayClassConditionStatusAccepted, true,
				gatewayv1.GatewayClassReasonAccepted, "handled by meshgate", gc.Generation))
			s.gw.classes[gc.Name] = gc
		}
		s.gw.status.Classes[gc.Name] = st
	}
}

// processGateways validates the listeners of our Gateways, oldest first,
// and serves the certificates of their HTTPS listeners.
func processGateways(s *state) {
	gws := slices.Clone(s.c.Gateways())
	slices.SortStableFunc(gws, func(a, b *gatewayv1.Gateway) int { return compareAge(a, b) })
	for _, gw := range gws {
		if s.gw.classes[string(gw.Spec.GatewayClassName)] == nil {
			continue
		}
		gb := &gatewayBuild{gw: gw}
		s.gw.gateways = append(s.gw.gateways, gb)
		s.gw.byName[key(gw)] = gb
		for i := range gw.Spec.Listeners {
			gb.listeners = append(gb.listeners, &listenerBuild{gb: gb, l: gw.Spec.Listeners[i]})
		}
		gb.ports = map[int]*frontend{}
	}
	s.assignAddresses()
	processListenerSets(s)
	attachTLSPolicies(s)
	for _, gb := range s.gw.gateways {
		for _, lb := range gb.listeners {
			s.validateListener(lb)
		}
		markConflicts(gb.listeners)
		for _, lb := range gb.listeners {
			s.claimL4Port(lb)
			lb.fe = s.listenerFrontend(lb)
			s.gatewayTLS(lb)
		}
	}
}

// validateListener sets the Accepted and ResolvedRefs facts of lb that do
// not depend on other listeners.
func (s *state) validateListener(lb *listenerBuild) {
	lb.accepted, lb.resolved = true, true
	lb.acceptedReason, lb.resolvedReason = gatewayv1.ListenerReasonAccepted, gatewayv1.ListenerReasonResolvedRefs
	kinds := routeKindsFor(lb.l.Protocol)
	if kinds == nil {
		lb.reject(gatewayv1.ListenerReasonUnsupportedProtocol, fmt.Sprintf("protocol %q is not supported (HTTP, HTTPS, TLS, TCP and UDP are)", lb.l.Protocol))
		lb.kinds = []gatewayv1.RouteGroupKind{}
		return
	}
	s.listenerKinds(lb, kinds)
	if msg := s.tlsModeProblem(lb); msg != "" {
		// No route kind can attach to a listener in a mode meshgate does
		// not serve: its status lists none (the conformance suite's
		// TLSRouteListenerTerminateNotSupported requires an empty list).
		lb.reject(gatewayv1.ListenerReasonUnsupportedValue, msg)
		lb.kinds = []gatewayv1.RouteGroupKind{}
		return
	}
	if msg := s.portProblem(lb); msg != "" {
		lb.reject(gatewayv1.ListenerReasonPortUnavailable, msg)
	}
}

func (lb *listenerBuild) reject(reason gatewayv1.ListenerConditionReason, msg string) {
	lb.accepted, lb.acceptedReason, lb.acceptedMsg = false, reason, msg
}

func (lb *listenerBuild) unresolved(reason gatewayv1.ListenerConditionReason, msg string) {
	if lb.resolved { // keep the first reason
		lb.resolved, lb.resolvedReason, lb.resolvedMsg = false, reason, msg
	}
}

// listenerKinds fills lb.kinds from allowedRoutes.kinds (or the protocol's
// defaults), flagging kinds the protocol cannot carry.
func (s *state) listenerKinds(lb *listenerBuild, supported []gatewayv1.Kind) {
	lb.kinds = []gatewayv1.RouteGroupKind{}
	if lb.l.AllowedRoutes == nil || len(lb.l.AllowedRoutes.Kinds) == 0 {
		for _, k := range supported {
			g := gatewayv1.Group(gatewayGroup)
			lb.kinds = append(lb.kinds, gatewayv1.RouteGroupKind{Group: &g, Kind: k})
		}
		return
	}
	for _, rk := range lb.l.AllowedRoutes.Kinds {
		g := gatewayv1.Group(gatewayGroup)
		if rk.Group != nil {
			g = *rk.Group
		}
		if g != gatewayGroup || !slices.Contains(supported, rk.Kind) {
			lb.unresolved(gatewayv1.ListenerReasonInvalidRouteKinds, fmt.Sprintf("route kind %s/%s is not supported on a %s listener", g, rk.Kind, lb.l.Protocol))
			continue
		}
		lb.kinds = append(lb.kinds, gatewayv1.RouteGroupKind{Group: &g, Kind: rk.Kind})
	}
}

// tlsModeProblem returns why the listener's TLS mode is unsupported.
func (s *state) tlsModeProblem(lb *listenerBuild) string {
	mode := gatewayv1.TLSModeTerminate
	if lb.l.TLS != nil && lb.l.TLS.Mode != nil {
		mode = *lb.l.TLS.Mode
	}
	switch lb.l.Protocol {
	case gatewayv1.HTTPSProtocolType:
		if mode != gatewayv1.TLSModeTerminate {
			return "HTTPS listeners terminate TLS; use a TLS listener for passthrough"
		}
	case gatewayv1.TLSProtocolType:
		if mode != gatewayv1.TLSModePassthrough && mode != gatewayv1.TLSModeTerminate {
			return fmt.Sprintf("TLS listeners support modes Passthrough and Terminate, not %q", mode)
		}
	}
	return ""
}

// portProblem returns why the listener's port cannot be served. Merged
// Gateways (no Options.GatewayAddressPool) share meshgate's two front ends:
// HTTP listeners must use Options.GatewayHTTPPort, HTTPS and TLS listeners
// GatewayHTTPSPort, and TCP and UDP listeners may use any other port. With
// a pool, each Gateway's address is its own: any listener may use any
// port (listeners of one Gateway that cannot share a port are conflicts,
// markConflicts).
func (s *state) portProblem(lb *listenerBuild) string {
	if len(s.opts.GatewayAddressPool) > 0 {
		return ""
	}
	port := int(lb.l.Port)
	const own = "; HTTP, HTTPS and TLS listeners on other ports need Gateways on addresses of their own (--gateway-address-pool)"
	switch lb.l.Protocol {
	case gatewayv1.HTTPProtocolType:
		if port != s.opts.GatewayHTTPPort {
			return fmt.Sprintf("meshgate serves merged Gateways' HTTP on port %d only%s", s.opts.GatewayHTTPPort, own)
		}
	case gatewayv1.HTTPSProtocolType, gatewayv1.TLSProtocolType:
		if port != s.opts.GatewayHTTPSPort {
			return fmt.Sprintf("meshgate serves merged Gateways' HTTPS and TLS on port %d only%s", s.opts.GatewayHTTPSPort, own)
		}
	case gatewayv1.TCPProtocolType:
		if port == s.opts.GatewayHTTPPort || port == s.opts.GatewayHTTPSPort {
			return fmt.Sprintf("port %d is meshgate's HTTP or HTTPS port", port)
		}
	}
	return ""
}

// family groups protocols that can share a port.
func family(p gatewayv1.ProtocolType) string {
	switch p {
	case gatewayv1.HTTPSProtocolType, gatewayv1.TLSProtocolType:
		return "tls"
	case gatewayv1.UDPProtocolType:
		return "udp"
	}
	return string(p)
}

// markConflicts flags listeners of one Gateway that share a port with an
// incompatible protocol (ProtocolConflict) or with the same protocol family
// and hostname (HostnameConflict).
func markConflicts(ls []*listenerBuild) {
	for i, a := range ls {
		for _, b := range ls[i+1:] {
			if a.l.Port != b.l.Port || !a.accepted || !b.accepted {
				continue
			}
			fa, fb := family(a.l.Protocol), family(b.l.Protocol)
			switch {
			case fa == "udp" || fb == "udp":
				if fa == fb {
					conflict(a, b, gatewayv1.ListenerReasonHostnameConflict, "another UDP listener uses this port")
				}
			case fa != fb:
				conflict(a, b, gatewayv1.ListenerReasonProtocolConflict, fmt.Sprintf("port %d is also used with protocol %s and %s", a.l.Port, a.l.Protocol, b.l.Protocol))
			case fa == "TCP" || a.hostname() == b.hostname():
				conflict(a, b, gatewayv1.ListenerReasonHostnameConflict, fmt.Sprintf("another listener on port %d has hostname %q", a.l.Port, a.hostname()))
			}
		}
	}
}

// conflict marks a and b, or only b when they belong to different owners
// (the Gateway itself, or one ListenerSet): a listener of the Gateway, or of
// an older ListenerSet, takes precedence.
func conflict(a, b *listenerBuild, reason gatewayv1.ListenerConditionReason, msg string) {
	both := []*listenerBuild{a, b}
	if a.set != b.set {
		both = both[1:]
	}
	for _, lb := range both {
		if !lb.conflicted {
			lb.conflicted, lb.conflictReason, lb.conflictMsg = true, reason, msg
		}
	}
}

// listenerFrontend returns the frontend serving lb's routes (see
// listenerBuild.fe), creating the frontend of its port on its Gateway's
// own address when it is the first usable listener there.
func (s *state) listenerFrontend(lb *listenerBuild) *frontend {
	gb := lb.gb
	var kind routing.FrontendKind
	switch lb.l.Protocol {
	case gatewayv1.HTTPProtocolType:
		kind = routing.FrontendHTTP
	case gatewayv1.HTTPSProtocolType, gatewayv1.TLSProtocolType:
		kind = routing.FrontendTLS
	}
	if !gb.own || !gb.served() || kind == 0 || !lb.usable() {
		return gb.fe
	}
	port := int(lb.l.Port)
	if fe := gb.ports[port]; fe != nil {
		return fe // markConflicts kept one kind per port
	}
	fe := newFrontend(gb.fe.addr)
	fe.port, fe.kind = port, kind
	gb.ports[port] = fe
	s.gw.fronts = append(s.gw.fronts, fe)
	return fe
}

// claimL4Port takes the TCP or UDP port of lb for its Gateway, first come
// (oldest Gateway) first served, after the L4 ConfigMap's entries.
func (s *state) claimL4Port(lb *listenerBuild) {
	var proto routing.L4Protocol
	switch lb.l.Protocol {
	case gatewayv1.TCPProtocolType:
		proto = routing.L4TCP
	case gatewayv1.UDPProtocolType:
		proto = routing.L4UDP
	default:
		return
	}
	if !lb.usable() || !lb.gb.served() {
		return
	}
	k := l4Port{lb.gb.fe.addr, proto, int(lb.l.Port)}
	if !k.addr.IsValid() && slices.ContainsFunc(s.l4, func(e routing.L4Service) bool { return e.Protocol == proto && e.Port == k.port }) {
		lb.reject(gatewayv1.ListenerReasonPortUnavailable, fmt.Sprintf("%s port %d is used by the L4 ConfigMap", proto, k.port))
		return
	}
	if owner := s.gw.l4Owners[k]; owner != nil {
		lb.reject(gatewayv1.ListenerReasonPortUnavailable, fmt.Sprintf("%s port %d is used by Gateway %s", proto, k.port, nsName(owner.gb.gw)))
		return
	}
	s.gw.l4Owners[k] = lb
}

// gatewayTLS resolves the certificateRefs of an HTTPS listener, or of a
// TLS listener in mode Terminate, and serves its hostname (or, without
// one, every SNI no other host claims) with the first valid certificate.
func (s *state) gatewayTLS(lb *listenerBuild) {
	if !lb.terminates() || lb.l.TLS == nil {
		if lb.l.Protocol == gatewayv1.HTTPSProtocolType {
			lb.unresolved(gatewayv1.ListenerReasonInvalidCertificateRef, "an HTTPS listener needs tls.certificateRefs")
		}
		return
	}
	gw := lb.gb.gw
	from := fromRef{group: gatewayGroup, kind: "Gateway", ns: gw.Namespace}
	if lb.set != nil {
		from = fromRef{group: gatewayGroup, kind: "ListenerSet", ns: lb.set.Namespace}
	}
	if len(lb.l.TLS.CertificateRefs) == 0 {
		lb.unresolved(gatewayv1.ListenerReasonInvalidCertificateRef, "tls.certificateRefs is empty")
	}
	for _, ref := range lb.l.TLS.CertificateRefs {
		cert, reason, msg := s.listenerCert(from, ref)
		if cert == nil {
			lb.unresolved(reason, msg)
			continue
		}
		if lb.cert == nil {
			lb.cert = cert
		}
	}
	if lb.cert == nil || !lb.usable() {
		return
	}
	s.serveListenerCert(lb)
}

func (s *state) listenerCert(from fromRef, ref gatewayv1.SecretObjectReference) (*tls.Certificate, gatewayv1.ListenerConditionReason, string) {
	group, kind := "", "Secret"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := from.ns
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	if group != "" || kind != "Secret" {
		return nil, gatewayv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("certificateRef %s/%s %s: only core Secrets are supported", group, kind, ref.Name)
	}
	if ns != from.ns && !s.granted(from, toRef{group: "", kind: "Secret", ns: ns, name: string(ref.Name)}) {
		return nil, gatewayv1.ListenerReasonRefNotPermitted, fmt.Sprintf("certificateRef to Secret %s/%s is not permitted by a ReferenceGrant", ns, ref.Name)
	}
	cert, err := s.c.LookupTLSSecret(ns, string(ref.Name))
	if err != nil {
		why := "is not a valid kubernetes.io/tls Secret"
		if errors.Is(err, ErrNotFound) {
			why = "does not exist"
		}
		return nil, gatewayv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("Secret %s/%s %s: %v", ns, ref.Name, why, err)
	}
	return cert, "", ""
}

// serveListenerCert adds the TLS host of an HTTPS listener. A host already
// served (by an Ingress or an older listener) keeps its certificate.
func (s *state) serveListenerCert(lb *listenerBuild) {
	host, fe := lb.hostname(), lb.fe
	if host == "" {
		if fe.gwDefaultCert == nil {
			fe.gwDefaultCert, fe.gwDefaultPolicy = lb.cert, s.listenerPolicy(lb)
		}
		return
	}
	if fe.tlsHosts[host] != nil {
		return
	}
	fe.tlsHosts[host] = &tlsHostBuild{name: host, cert: lb.cert, secret: "gateway:" + nsName(lb.gb.gw) + "/" + string(lb.l.Name),
		policy: s.listenerPolicy(lb), stream: lb.l.Protocol == gatewayv1.TLSProtocolType}
}

// publishedAddresses lists Options.GatewayAddresses as status addresses.
func (s *state) publishedAddresses() []gatewayv1.GatewayStatusAddress {
	out := []gatewayv1.GatewayStatusAddress{}
	for _, a := range s.opts.GatewayAddresses {
		t := gatewayv1.HostnameAddressType
		if _, err := netip.ParseAddr(a); err == nil {
			t = gatewayv1.IPAddressType
		}
		out = append(out, gatewayv1.GatewayStatusAddress{Type: &t, Value: a})
	}
	return out
}
