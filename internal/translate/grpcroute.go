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
	tmpl.Backends = []routing.WeightedBackend{}
	ext := slices.ContainsFunc(rule.Filters, func(f gatewayv1.GRPCRouteFilter) bool { return f.Type == gatewayv1.GRPCRouteFilterExtensionRef })
	for j, br := range rule.BackendRefs {
		wb := routing.WeightedBackend{Weight: weightOf(br.Weight)}
		b, reason, msg := s.gwBackend("GRPCRoute", gr, br.BackendObjectReference, routing.ProtocolH2C, 0)
		if b == nil {
			rb.refs.refProblem(reason, fmt.Sprintf("%s.backendRefs[%d]: %s", where, j, msg))
		}
		wb.Backend = b
		wb.Filters = s.grpcFilters(rb, gr, br.Filters, fmt.Sprintf("%s.backendRefs[%d]", where, j))
		tmpl.Backends = append(tmpl.Backends, wb)
	}
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

// grpcFilters converts GRPCRoute filters (header modifiers and mirrors).
func (s *state) grpcFilters(rb *routeBuild, gr *gatewayv1.GRPCRoute, fs []gatewayv1.GRPCRouteFilter, where string) *routing.Filters {
	if len(fs) == 0 {
		return nil
	}
	f := &routing.Filters{}
	for i, flt := range fs {
		at := fmt.Sprintf("%s.filters[%d]", where, i)
		switch flt.Type {
		case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
			f.RequestHeaders = headerModifier(flt.RequestHeaderModifier)
		case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
			f.ResponseHeaders = headerModifier(flt.ResponseHeaderModifier)
		case gatewayv1.GRPCRouteFilterRequestMirror:
			s.mirror(rb, gr, f, flt.RequestMirror, at)
		case gatewayv1.GRPCRouteFilterExtensionRef:
			rb.refs.refProblem(gatewayv1.RouteReasonInvalidKind, fmt.Sprintf("%s: extensionRef %s/%s is not a filter meshgate knows", at, extGroupKind(flt.ExtensionRef), extName(flt.ExtensionRef)))
		default:
			rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s: filter type %q is not supported", at, flt.Type)
		}
	}
	return f
}
