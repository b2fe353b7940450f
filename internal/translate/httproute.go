package translate

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ruleBuild is one Gateway API rule converted once per route: the routing
// routes of its matches, without host and scope, which attachment adds.
type ruleBuild struct {
	routes []routing.Route
}

// routeBuild collects a converted HTTPRoute or GRPCRoute.
type routeBuild struct {
	kind     string
	obj      metav1.Object
	rules    []ruleBuild
	accepted *routeCondition // non-nil: the route is not accepted for this reason
	refs     routeCondition
}

func (rb *routeBuild) reject(reason gatewayv1.RouteConditionReason, format string, args ...any) {
	if rb.accepted == nil {
		rb.accepted = &routeCondition{reason: reason, msg: fmt.Sprintf(format, args...)}
	}
}

// processHTTPRoutes converts every HTTPRoute attached to our Gateways,
// oldest first.
func processHTTPRoutes(s *state) {
	routes := slices.Clone(s.c.HTTPRoutes())
	slices.SortStableFunc(routes, func(a, b *gatewayv1.HTTPRoute) int { return compareAge(a, b) })
	for _, hr := range routes {
		parents := s.attach("HTTPRoute", hr, hr.Spec.ParentRefs, hr.Spec.Hostnames, true)
		if len(parents) == 0 {
			continue
		}
		s.gw.curParents = parents
		rb := &routeBuild{kind: "HTTPRoute", obj: hr, refs: resolvedOK()}
		for i := range hr.Spec.Rules {
			rb.rules = append(rb.rules, s.httpRule(rb, hr, i))
		}
		s.serveRoute(rb, parents, hr.Generation)
	}
}

// serveRoute adds the rules of an accepted route to the virtual hosts of
// every listener it attached to, and records its parent statuses.
func (s *state) serveRoute(rb *routeBuild, parents []*parentResult, gen int64) {
	s.routeProblems(rb, parents)
	if rb.accepted == nil {
		countAttached(parents)
	}
	var st []gatewayv1.RouteParentStatus
	src := rb.kind + " " + nsName(rb.obj)
	seen := map[string]bool{}
	for _, pr := range parents {
		st = append(st, s.parentStatus(pr, gen, rb.accepted, rb.refs))
		if !pr.accepted || rb.accepted != nil {
			continue
		}
		for _, a := range pr.attached {
			for _, host := range a.hosts {
				fe := a.lb.fe
				k := fmt.Sprintf("%s|%d|%s|%d", host, a.lb.scope(), fe.addr, fe.port)
				if seen[k] {
					continue // another listener with the same front end and host
				}
				seen[k] = true
				vb := fe.vhost(host)
				vb.gateway = true
				for _, r := range rb.rules {
					for _, rt := range r.routes {
						rt.Scope = a.lb.scope()
						rt.Source = src
						rt.Filters = withListenerPort(rt.Filters, int(a.lb.l.Port))
						vb.routes = append(vb.routes, rt)
					}
				}
			}
		}
	}
	s.gw.status.Routes[RouteKey{Kind: rb.kind, NamespacedName: key(rb.obj)}] = st
}

// routeProblems reports what is wrong with a route as Problems (Events in
// a cluster, log lines in standalone mode); its status says the same.
func (s *state) routeProblems(rb *routeBuild, parents []*parentResult) {
	if rb.accepted != nil {
		s.problem(rb.kind, rb.obj, string(rb.accepted.reason), "%s; route not served", rb.accepted.msg)
	}
	if !rb.refs.ok {
		s.problem(rb.kind, rb.obj, string(rb.refs.reason), "%s; requests for it get 500", rb.refs.msg)
	}
	for _, pr := range parents {
		if !pr.accepted {
			s.problem(rb.kind, rb.obj, string(pr.reason), "parent %s: %s", pr.ref.Name, pr.msg)
		}
	}
}

// withListenerPort returns f with its redirect's ListenerPort set (a copy:
// the same rule may be served on listeners with different ports).
func withListenerPort(f *routing.Filters, port int) *routing.Filters {
	if f == nil || f.Redirect == nil || f.Redirect.ListenerPort == port {
		return f
	}
	c := *f
	r := *f.Redirect
	r.ListenerPort = port
	c.Redirect = &r
	return &c
}

// httpRule converts rule i of hr into one routing.Route per match.
func (s *state) httpRule(rb *routeBuild, hr *gatewayv1.HTTPRoute, i int) ruleBuild {
	rule := &hr.Spec.Rules[i]
	where := fmt.Sprintf("spec.rules[%d]", i)
	filters := s.httpFilters(rb, hr, rule.Filters, where)
	var tmpl routing.Route
	tmpl.Filters = filters
	if rule.Timeouts != nil {
		var err error
		if tmpl.Timeouts.Request, err = parseGWDuration(rule.Timeouts.Request); err != nil {
			rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s.timeouts.request: %v", where, err)
		}
		if tmpl.Timeouts.BackendRequest, err = parseGWDuration(rule.Timeouts.BackendRequest); err != nil {
			rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s.timeouts.backendRequest: %v", where, err)
		}
	}
	switch {
	case hasExtensionRef(rule.Filters):
		tmpl.Filters, tmpl.Backends = nil, []routing.WeightedBackend{} // 500: a filter we cannot run
	case filters == nil || filters.Redirect == nil:
		refs := make([]gatewayv1.BackendRef, len(rule.BackendRefs))
		for j, br := range rule.BackendRefs {
			refs[j] = br.BackendRef
		}
		aff := sessionAffinity(rb, rule.SessionPersistence, i, sessionPath(rule.Matches), where)
		tmpl.Backends = s.weightedBackends(rb, refs, "", aff, where, func(j int) *routing.Filters {
			return s.httpFilters(rb, hr, rule.BackendRefs[j].Filters, fmt.Sprintf("%s.backendRefs[%d]", where, j))
		})
	}
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.HTTPRouteMatch{{}}
	}
	var out ruleBuild
	for j, m := range matches {
		rt := tmpl
		rt.Order = s.nextOrderValue()
		if err := httpMatch(&rt, m); err != nil {
			rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s.matches[%d]: %v", where, j, err)
			continue
		}
		out.routes = append(out.routes, rt)
	}
	return out
}

// weightedBackends resolves the backendRefs of a rule (proto: the default
// upstream protocol) with each one's filters (filters(j)); unresolved ones
// stay as nil backends (500) and record the route's ResolvedRefs problem.
// aff is the rule's session persistence (zero: none), shared by all its
// backends. The result is never nil: a rule without backends answers 500.
func (s *state) weightedBackends(rb *routeBuild, refs []gatewayv1.BackendRef, proto routing.Protocol, aff routing.CookieAffinity, where string, filters func(j int) *routing.Filters) []routing.WeightedBackend {
	out := make([]routing.WeightedBackend, 0, len(refs))
	for j, br := range refs {
		b, reason, msg := s.gwSessionBackend(rb.kind, rb.obj, br.BackendObjectReference, proto, 0, aff)
		if b == nil {
			rb.refs.refProblem(reason, fmt.Sprintf("%s.backendRefs[%d]: %s", where, j, msg))
		}
		out = append(out, routing.WeightedBackend{Backend: b, Weight: weightOf(br.Weight), Filters: filters(j)})
	}
	return out
}

func hasExtensionRef(fs []gatewayv1.HTTPRouteFilter) bool {
	for _, f := range fs {
		if f.Type == gatewayv1.HTTPRouteFilterExtensionRef {
			return true
		}
	}
	return false
}

func (s *state) nextOrderValue() int {
	s.gw.nextOrder++
	return s.gw.nextOrder
}

// httpMatch sets the path, method, header and query conditions of rt.
func httpMatch(rt *routing.Route, m gatewayv1.HTTPRouteMatch) error {
	rt.PathType, rt.Path = routing.PathPrefix, "/"
	if p := m.Path; p != nil {
		if p.Value != nil {
			rt.Path = *p.Value
		}
		t := gatewayv1.PathMatchPathPrefix
		if p.Type != nil {
			t = *p.Type
		}
		switch t {
		case gatewayv1.PathMatchExact:
			rt.PathType = routing.PathExact
		case gatewayv1.PathMatchPathPrefix:
		case gatewayv1.PathMatchRegularExpression:
			re, err := regexp.Compile(rt.Path)
			if err != nil {
				return fmt.Errorf("path regular expression: %w", err)
			}
			rt.PathType, rt.PathRegex = routing.PathRegex, re
		default:
			return fmt.Errorf("path match type %q is not supported", t)
		}
		if rt.PathType != routing.PathRegex && !strings.HasPrefix(rt.Path, "/") {
			return fmt.Errorf("path %q must start with /", rt.Path)
		}
	}
	if m.Method != nil {
		rt.Method = string(*m.Method)
	}
	var err error
	seen := map[string]bool{}
	for _, h := range m.Headers {
		name := http.CanonicalHeaderKey(string(h.Name))
		if seen[name] {
			continue // only the first of equivalent names counts
		}
		seen[name] = true
		t := string(gatewayv1.HeaderMatchExact)
		if h.Type != nil {
			t = string(*h.Type)
		}
		vm, e := valueMatch(name, t, h.Value)
		err = firstErr(err, e)
		rt.Headers = append(rt.Headers, vm)
	}
	seen = map[string]bool{}
	for _, q := range m.QueryParams {
		name := string(q.Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		t := string(gatewayv1.QueryParamMatchExact)
		if q.Type != nil {
			t = string(*q.Type)
		}
		vm, e := valueMatch(name, t, q.Value)
		err = firstErr(err, e)
		rt.Query = append(rt.Query, vm)
	}
	return err
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// valueMatch converts a header or query parameter match of type t ("Exact"
// or "RegularExpression").
func valueMatch(name, t, value string) (routing.ValueMatch, error) {
	vm := routing.ValueMatch{Name: name, Value: value}
	switch t {
	case "Exact":
	case "RegularExpression":
		re, err := regexp.Compile(value)
		if err != nil {
			return vm, fmt.Errorf("%s: regular expression: %w", name, err)
		}
		vm.Type, vm.Regex = routing.MatchRegex, re
	default:
		return vm, fmt.Errorf("%s: match type %q is not supported", name, t)
	}
	return vm, nil
}
