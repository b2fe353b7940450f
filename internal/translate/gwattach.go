package translate

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// fromRef and toRef are the two ends of a cross-namespace reference.
type fromRef struct{ group, kind, ns string }
type toRef struct{ group, kind, ns, name string }

// granted reports whether a ReferenceGrant in to.ns lets objects of from
// refer to the object to.
func (s *state) granted(from fromRef, to toRef) bool {
	for _, g := range s.c.gw.grants {
		if g.Namespace != to.ns {
			continue
		}
		okFrom := slices.ContainsFunc(g.Spec.From, func(f gatewayv1.ReferenceGrantFrom) bool {
			return string(f.Group) == from.group && string(f.Kind) == from.kind && string(f.Namespace) == from.ns
		})
		okTo := okFrom && slices.ContainsFunc(g.Spec.To, func(t gatewayv1.ReferenceGrantTo) bool {
			return string(t.Group) == to.group && string(t.Kind) == to.kind && (t.Name == nil || string(*t.Name) == to.name)
		})
		if okTo {
			return true
		}
	}
	return false
}

// attachment is a listener a route attached to, with the hostnames the
// route is served under there ("" for any host).
type attachment struct {
	lb    *listenerBuild
	hosts []string
}

// parentResult is the outcome of one parentRef of a route.
type parentResult struct {
	ref gatewayv1.ParentReference
	gw  *gatewayBuild
	// selected are the listeners the parentRef, allowedRoutes and hostnames
	// select; attached are those of them that are valid, where the route
	// is served.
	selected []*listenerBuild
	attached []attachment
	accepted bool
	reason   gatewayv1.RouteConditionReason
	msg      string
}

// attach resolves the parentRefs of a route of kind (HTTPRoute …) against
// our Gateways. hostnames are the route's (nil for TCP and UDP routes,
// which ignore listener hostnames). Parents that are not our Gateways get
// no result. Each listener counts the route once in AttachedRoutes.
func (s *state) attach(kind string, route metav1.Object, refs []gatewayv1.ParentReference, hostnames []gatewayv1.Hostname, useHosts bool) []*parentResult {
	var out []*parentResult
	for _, ref := range refs {
		group, pkind := gatewayGroup, "Gateway"
		if ref.Group != nil {
			group = string(*ref.Group)
		}
		if ref.Kind != nil {
			pkind = string(*ref.Kind)
		}
		ns := route.GetNamespace()
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		if group != gatewayGroup {
			continue
		}
		var cands []*listenerBuild
		var gb *gatewayBuild
		switch pkind {
		case "Gateway":
			gb = s.gw.byName[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
			if gb == nil {
				continue
			}
			for _, lb := range gb.listeners {
				if lb.set == nil {
					cands = append(cands, lb)
				}
			}
		case "ListenerSet":
			ls := s.gw.sets[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
			if ls == nil {
				continue
			}
			gb, cands = ls.gb, ls.listeners
		default:
			continue
		}
		pr := &parentResult{ref: ref, gw: gb}
		out = append(out, pr)
		s.attachParent(pr, kind, route, cands, hostnames, useHosts)
	}
	return out
}

// countAttached adds a route accepted by its parents to the AttachedRoutes
// of every listener it selected, once per listener, whether or not the
// listener itself is valid (as the API requires).
func countAttached(parents []*parentResult) {
	counted := map[*listenerBuild]bool{}
	for _, pr := range parents {
		if !pr.accepted {
			continue
		}
		for _, lb := range pr.selected {
			if !counted[lb] {
				counted[lb] = true
				lb.attached++
			}
		}
	}
}

func (s *state) attachParent(pr *parentResult, kind string, route metav1.Object, cands []*listenerBuild, hostnames []gatewayv1.Hostname, useHosts bool) {
	ref := pr.ref
	var matched []*listenerBuild
	for _, lb := range cands {
		if ref.SectionName != nil && *ref.SectionName != lb.l.Name {
			continue
		}
		if ref.Port != nil && *ref.Port != lb.l.Port {
			continue
		}
		matched = append(matched, lb)
	}
	if len(matched) == 0 {
		pr.reason, pr.msg = gatewayv1.RouteReasonNoMatchingParent, "no listener matches the parentRef's sectionName and port"
		return
	}
	var allowed []*listenerBuild
	for _, lb := range matched {
		if s.allows(lb, kind, route.GetNamespace()) {
			allowed = append(allowed, lb)
		}
	}
	if len(allowed) == 0 {
		pr.reason, pr.msg = gatewayv1.RouteReasonNotAllowedByListeners, fmt.Sprintf("no matching listener accepts a %s from namespace %s", kind, route.GetNamespace())
		return
	}
	for _, lb := range allowed {
		a := attachment{lb: lb, hosts: []string{""}}
		if useHosts {
			a.hosts = intersectHosts(lb.hostname(), hostnames)
			if len(a.hosts) == 0 {
				continue
			}
		}
		pr.selected = append(pr.selected, lb)
		if lb.usable() {
			pr.attached = append(pr.attached, a)
		}
	}
	if len(pr.selected) > 0 && len(pr.attached) == 0 {
		pr.reason, pr.msg = gatewayv1.RouteReasonNotAllowedByListeners, "every matching listener is invalid or conflicted"
		return
	}
	if len(pr.attached) == 0 {
		pr.reason, pr.msg = gatewayv1.RouteReasonNoMatchingListenerHostname, "no hostname of the route matches a listener's hostname"
		return
	}
	pr.accepted, pr.reason, pr.msg = true, gatewayv1.RouteReasonAccepted, "attached"
}

// allows reports whether listener lb accepts a route of kind from namespace
// ns (allowedRoutes.kinds and .namespaces).
func (s *state) allows(lb *listenerBuild, kind, ns string) bool {
	if !slices.ContainsFunc(lb.kinds, func(k gatewayv1.RouteGroupKind) bool { return string(k.Kind) == kind }) {
		return false
	}
	from := gatewayv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := lb.l.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	home := lb.gb.gw.Namespace
	if lb.set != nil {
		home = lb.set.Namespace
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSame:
		return ns == home
	case gatewayv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		ls, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false
		}
		nsObj := s.c.LookupNamespace(ns)
		return nsObj != nil && ls.Matches(labels.Set(nsObj.Labels))
	}
	return false // None
}

// intersectHosts returns the hostnames a route is served under on a
// listener with hostname listener ("" = any): the route's hostnames that
// the listener's covers (a wildcard narrowed to the listener's more specific
// name), or the listener's hostname when the route names none. "" in the
// result means any host.
func intersectHosts(listener string, route []gatewayv1.Hostname) []string {
	if len(route) == 0 {
		return []string{listener}
	}
	var out []string
	for _, h := range route {
		r := strings.ToLower(string(h))
		switch {
		case listener == "":
			out = append(out, r)
		case hostCovers(listener, r):
			out = append(out, r)
		case hostCovers(r, listener):
			out = append(out, listener)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// hostCovers reports whether pattern (a name or "*.suffix", Gateway API
// semantics: the wildcard spans one or more labels) matches every name name
// stands for.
func hostCovers(pattern, name string) bool {
	if pattern == name {
		return true
	}
	if !isWildcard(pattern) {
		return false
	}
	suffix := pattern[1:] // ".example.com"
	if isWildcard(name) {
		return strings.HasSuffix(name[1:], suffix) && len(name)-1 > len(suffix)
	}
	return strings.HasSuffix(name, suffix) && len(name) > len(suffix)
}

// parentStatus renders a parentResult as our RouteParentStatus entry,
// with the route-level Accepted problem (if any) and ResolvedRefs outcome.
func (s *state) parentStatus(pr *parentResult, gen int64, routeProblem *routeCondition, refs routeCondition) gatewayv1.RouteParentStatus {
	acc := cond(gatewayv1.RouteConditionAccepted, pr.accepted, pr.reason, pr.msg, gen)
	if pr.accepted && routeProblem != nil {
		acc = cond(gatewayv1.RouteConditionAccepted, false, routeProblem.reason, routeProblem.msg, gen)
	}
	return gatewayv1.RouteParentStatus{
		ParentRef:      pr.ref,
		ControllerName: gatewayv1.GatewayController(s.opts.GatewayControllerName),
		Conditions: []metav1.Condition{acc,
			cond(gatewayv1.RouteConditionResolvedRefs, refs.ok, refs.reason, refs.msg, gen)},
	}
}

// routeCondition is a route-wide reason for a condition.
type routeCondition struct {
	ok     bool
	reason gatewayv1.RouteConditionReason
	msg    string
}

// resolvedOK is the ResolvedRefs outcome of a route without problems.
func resolvedOK() routeCondition {
	return routeCondition{ok: true, reason: gatewayv1.RouteReasonResolvedRefs, msg: "all references resolved"}
}

// refProblem records the first unresolved reference of a route.
func (rc *routeCondition) refProblem(reason gatewayv1.RouteConditionReason, msg string) {
	if rc.ok {
		*rc = routeCondition{reason: reason, msg: msg}
	}
}
