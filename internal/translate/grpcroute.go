package translate

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"

	"github.com/meshgate/meshgate/internal/routing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// processGRPCRoutes converts every GRPCRoute attached to our Gateways,
// oldest first. gRPC methods are HTTP/2 paths "/package.Service/Method";
// backends speak h2c unless their port's appProtocol says otherwise.
func processGRPCRoutes(s *state) {
	routes := slices.Clone(s.c.GRPCRoutes())
	slices.SortStableFunc(routes, func(a, b *gatewayv1.GRPCRoute) int { return compareAge(a, b) })
	for _, gr := range routes {
		parents := s.attach("GRPCRoute", gr, gr.Spec.ParentRefs, gr.Spec.Hostnames, true)
		if len(parents) == 0 {
			continue
		}
		s.gw.curParents = parents
		rb := &routeBuild{kind: "GRPCRoute", obj: gr, refs: resolvedOK()}
		for i := range gr.Spec.Rules {
			rb.rules = append(rb.rules, s.grpcRule(rb, gr, i))
		}
		s.serveRoute(rb, parents, gr.Generation)
	}
}

func (s *state) grpcRule(rb *routeBuild, gr *gatewayv1.GRPCRoute, i int) ruleBuild {
	rule := &gr.Spec.Rules[i]
	where := fmt.Sprintf("spec.rules[%d]", i)
	var tmpl routing.Route
	tmpl.Filters = s.grpcFilters(rb, gr, rule.Filters, where)
	ext := slices.ContainsFunc(rule.Filters, func(f gatewayv1.GRPCRouteFilter) bool { return f.Type == gatewayv1.GRPCRouteFilterExtensionRef })
	refs := make([]gatewayv1.BackendRef, len(rule.BackendRefs))
	for j, br := range rule.BackendRefs {
		refs[j] = br.BackendRef
	}
	aff := sessionAffinity(rb, rule.SessionPersistence, i, "/", where)
	tmpl.Backends = s.weightedBackends(rb, refs, routing.ProtocolH2C, aff, where, func(j int) *routing.Filters {
		return s.grpcFilters(rb, gr, rule.BackendRefs[j].Filters, fmt.Sprintf("%s.backendRefs[%d]", where, j))
	})
	if ext {
		tmpl.Filters, tmpl.Backends = nil, []routing.WeightedBackend{}
	}
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.GRPCRouteMatch{{}}
	}
	var out ruleBuild
	for j, m := range matches {
		rt := tmpl
		rt.Order = s.nextOrderValue()
		if err := grpcMatch(&rt, m); err != nil {
			rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s.matches[%d]: %v", where, j, err)
			continue
		}
		out.routes = append(out.routes, rt)
	}
	return out
}

// grpcMatch turns a GRPCRouteMatch into path and header conditions.
func grpcMatch(rt *routing.Route, m gatewayv1.GRPCRouteMatch) error {
	rt.PathType, rt.Path = routing.PathPrefix, "/"
	if mm := m.Method; mm != nil {
		svc, method := "", ""
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			method = *mm.Method
		}
		regex := mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression
		switch {
		case !regex && svc != "" && method != "":
			rt.PathType, rt.Path = routing.PathExact, "/"+svc+"/"+method
		case !regex && svc != "":
			rt.Path = "/" + svc
		case !regex && method != "":
			if err := setPathRegex(rt, `^/[^/]+/`+regexp.QuoteMeta(method)+`$`); err != nil {
				return err
			}
		case regex:
			if svc == "" {
				svc = `[^/]+`
			}
			if method == "" {
				method = `[^/]+`
			}
			if err := setPathRegex(rt, `^/(`+svc+`)/(`+method+`)$`); err != nil {
				return err
			}
		}
	}
	var err error
	seen := map[string]bool{}
	for _, h := range m.Headers {
		name := http.CanonicalHeaderKey(string(h.Name))
		if seen[name] {
			continue
		}
		seen[name] = true
		t := string(gatewayv1.GRPCHeaderMatchExact)
		if h.Type != nil {
			t = string(*h.Type)
		}
		vm, e := valueMatch(name, t, h.Value)
		err = firstErr(err, e)
		rt.Headers = append(rt.Headers, vm)
	}
	return err
}

func setPathRegex(rt *routing.Route, expr string) error {
	re, err := regexp.Compile(expr)
	if err != nil {
		return fmt.Errorf("method regular expression: %w", err)
	}
	rt.PathType, rt.Path, rt.PathRegex = routing.PathRegex, expr, re
	return nil
}

// grpcFilters converts GRPCRoute filters (header modifiers, mirrors,
// extension refs), which are HTTPRoute filters of the same names and
// fields; a type HTTPRoutes do not know either is rejected as unsupported.
func (s *state) grpcFilters(rb *routeBuild, gr *gatewayv1.GRPCRoute, fs []gatewayv1.GRPCRouteFilter, where string) *routing.Filters {
	hf := make([]gatewayv1.HTTPRouteFilter, len(fs))
	for i, f := range fs {
		hf[i] = gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterType(f.Type),
			RequestHeaderModifier: f.RequestHeaderModifier, ResponseHeaderModifier: f.ResponseHeaderModifier,
			RequestMirror: f.RequestMirror, ExtensionRef: f.ExtensionRef}
	}
	return s.httpFilters(rb, gr, hf, where)
}
