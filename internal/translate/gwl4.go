package translate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// maxWeightedEndpoints bounds the endpoint list of a merged weighted L4
// backend (see weightedL4).
const maxWeightedEndpoints = 1024

// l4Merge is a weighted set of backends that becomes one backend whose
// endpoint list repeats each member's endpoints in proportion to its weight,
// so the L4 proxy's round robin honours the weights. It is filled after
// the endpoints are resolved (finishL4Merges).
type l4Merge struct {
	b       *routing.Backend
	members []routing.WeightedBackend
}

// l4Backend resolves the backendRefs of an L4 rule into one backend: the
// only backend with weight, or a merged one. It returns nil when no
// reference is usable.
func (s *state) l4Backend(rb *routeBuild, refs []gatewayv1.BackendRef, where string) *routing.Backend {
	var members []routing.WeightedBackend
	for j, br := range refs {
		b, reason, msg := s.gwBackend(rb.kind, rb.obj, br.BackendObjectReference, "", 0)
		if b == nil {
			rb.refs.refProblem(reason, fmt.Sprintf("%s.backendRefs[%d]: %s", where, j, msg))
			continue
		}
		if w := weightOf(br.Weight); w > 0 {
			members = append(members, routing.WeightedBackend{Backend: b, Weight: w})
		}
	}
	switch len(members) {
	case 0:
		return nil
	case 1:
		return members[0].Backend
	}
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = fmt.Sprintf("%s*%d", m.Backend.Name, m.Weight)
	}
	merged := &routing.Backend{Name: strings.Join(names, "+")}
	s.gw.merges = append(s.gw.merges, l4Merge{b: merged, members: members})
	return merged
}

// finishL4Merges fills the endpoints of merged weighted L4 backends.
func finishL4Merges(s *state) {
	for _, m := range s.gw.merges {
		g := uint32(0)
		for _, mb := range m.members {
			if len(mb.Backend.Endpoints) > 0 {
				g = gcd(g, mb.Weight)
			}
		}
		eps := []string{}
		for _, mb := range m.members {
			if g == 0 {
				break
			}
			for range mb.Weight / g {
				if len(eps)+len(mb.Backend.Endpoints) > maxWeightedEndpoints {
					break
				}
				eps = append(eps, mb.Backend.Endpoints...)
			}
		}
		m.b.Endpoints = eps
	}
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// processTLSRoutes routes the hostnames of TLSRoutes attached to TLS
// listeners by SNI, oldest route first: passed through on Passthrough
// listeners, their decrypted stream proxied on Terminate listeners. A
// hostname already routed on the frontend (by an Ingress or an older
// route) stays with it.
func processTLSRoutes(s *state) {
	routes := slices.Clone(s.c.TLSRoutes())
	slices.SortStableFunc(routes, func(a, b *gatewayv1.TLSRoute) int { return compareAge(a, b) })
	for _, tr := range routes {
		parents := s.attach("TLSRoute", tr, tr.Spec.ParentRefs, tr.Spec.Hostnames, true)
		if len(parents) == 0 {
			continue
		}
		s.gw.curParents = parents
		rb := &routeBuild{kind: "TLSRoute", obj: tr, refs: resolvedOK()}
		var b *routing.Backend
		for i, r := range tr.Spec.Rules {
			if rb2 := s.l4Backend(rb, r.BackendRefs, fmt.Sprintf("spec.rules[%d]", i)); b == nil {
				b = rb2
			}
		}
		s.serveL4(rb, parents, tr.Generation, func(a attachment) {
			for _, host := range a.hosts {
				if host == "" {
					s.problem("TLSRoute", tr, ReasonInvalidRule, "passthrough needs a hostname (on the route or the listener); not served")
					continue
				}
				pass := a.lb.fe.passthrough
				if a.lb.terminates() {
					pass = a.lb.fe.terminated
				}
				if prev, ok := pass[host]; ok && prev.owner != nsName(tr) {
					s.problem("TLSRoute", tr, ReasonConflict, "hostname %q is already passed through by %s; skipped", host, prev.owner)
					continue
				}
				pass[host] = passthroughEntry{backend: orUnavailable(b, nsName(tr)), owner: nsName(tr), gateway: true}
			}
		})
	}
}

// orUnavailable returns b, or a backend without endpoints (connections
// are refused) named for the route when b is nil.
func orUnavailable(b *routing.Backend, owner string) *routing.Backend {
	if b != nil {
		return b
	}
	return &routing.Backend{Name: owner + ":unresolved", Endpoints: []string{}}
}

// processTCPRoutes and processUDPRoutes forward the ports of TCP and UDP
// listeners to the backends of the oldest route attached there.
func processTCPRoutes(s *state) {
	routes := slices.Clone(s.c.TCPRoutes())
	slices.SortStableFunc(routes, func(a, b *gatewayv1.TCPRoute) int { return compareAge(a, b) })
	for _, r := range routes {
		s.l4Route("TCPRoute", r, r.Spec.ParentRefs, r.Generation, tcpRefs(r.Spec.Rules), routing.L4TCP)
	}
}

func processUDPRoutes(s *state) {
	routes := slices.Clone(s.c.UDPRoutes())
	slices.SortStableFunc(routes, func(a, b *gatewayv1.UDPRoute) int { return compareAge(a, b) })
	for _, r := range routes {
		s.l4Route("UDPRoute", r, r.Spec.ParentRefs, r.Generation, udpRefs(r.Spec.Rules), routing.L4UDP)
	}
}

func tcpRefs(rules []gatewayv1.TCPRouteRule) [][]gatewayv1.BackendRef {
	out := make([][]gatewayv1.BackendRef, len(rules))
	for i, r := range rules {
		out[i] = r.BackendRefs
	}
	return out
}

func udpRefs(rules []gatewayv1.UDPRouteRule) [][]gatewayv1.BackendRef {
	out := make([][]gatewayv1.BackendRef, len(rules))
	for i, r := range rules {
		out[i] = r.BackendRefs
	}
	return out
}

func (s *state) l4Route(kind string, obj metav1.Object, refs []gatewayv1.ParentReference, gen int64, rules [][]gatewayv1.BackendRef, proto routing.L4Protocol) {
	parents := s.attach(kind, obj, refs, nil, false)
	if len(parents) == 0 {
		return
	}
	rb := &routeBuild{kind: kind, obj: obj, refs: resolvedOK()}
	var b *routing.Backend
	for i, r := range rules {
		if rb2 := s.l4Backend(rb, r, fmt.Sprintf("spec.rules[%d]", i)); b == nil {
			b = rb2
		}
	}
	s.serveL4(rb, parents, gen, func(a attachment) {
		port, addr := int(a.lb.l.Port), a.lb.gb.fe.addr
		if !a.lb.gb.served() {
			return
		}
		if slices.ContainsFunc(s.l4, func(e routing.L4Service) bool { return e.Addr == addr && e.Protocol == proto && e.Port == port }) {
			return // an older route serves this listener
		}
		s.l4 = append(s.l4, routing.L4Service{Addr: addr, Protocol: proto, Port: port, Backend: orUnavailable(b, nsName(obj)), Source: kind + " " + nsName(obj)})
	})
}

// serveL4 records the parent statuses of an L4 route and calls serve for
// each listener it attached to.
func (s *state) serveL4(rb *routeBuild, parents []*parentResult, gen int64, serve func(attachment)) {
	s.routeProblems(rb, parents)
	countAttached(parents)
	var st []gatewayv1.RouteParentStatus
	for _, pr := range parents {
		st = append(st, s.parentStatus(pr, gen, rb.accepted, rb.refs))
		if !pr.accepted {
			continue
		}
		for _, a := range pr.attached {
			serve(a)
		}
	}
	s.gw.status.Routes[RouteKey{Kind: rb.kind, NamespacedName: key(rb.obj)}] = st
}
