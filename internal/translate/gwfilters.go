package translate

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// httpFilters converts the filters of an HTTPRoute rule or backendRef.
// Unsupported filters reject the route (Accepted=False, UnsupportedValue);
// an ExtensionRef (meshgate knows none) leaves it unresolved and its
// requests answered 500; RequestRedirect with URLRewrite is
// IncompatibleFilters. It returns nil when there is nothing to do.
func (s *state) httpFilters(rb *routeBuild, route metav1.Object, fs []gatewayv1.HTTPRouteFilter, where string) *routing.Filters {
	if len(fs) == 0 {
		return nil
	}
	f := &routing.Filters{}
	for i, flt := range fs {
		at := fmt.Sprintf("%s.filters[%d]", where, i)
		switch flt.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			f.RequestHeaders = headerModifier(flt.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			f.ResponseHeaders = headerModifier(flt.ResponseHeaderModifier)
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			f.Redirect = redirectOf(flt.RequestRedirect)
		case gatewayv1.HTTPRouteFilterURLRewrite:
			f.Rewrite = rewriteOf(flt.URLRewrite)
		case gatewayv1.HTTPRouteFilterRequestMirror:
			s.mirror(rb, route, f, flt.RequestMirror, at)
		case gatewayv1.HTTPRouteFilterExtensionRef:
			rb.refs.refProblem(gatewayv1.RouteReasonInvalidKind, fmt.Sprintf("%s: extensionRef %s/%s is not a filter meshgate knows", at, extGroupKind(flt.ExtensionRef), extName(flt.ExtensionRef)))
		default:
			rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s: filter type %q is not supported", at, flt.Type)
		}
	}
	if f.Redirect != nil && f.Rewrite != nil {
		rb.reject(gatewayv1.RouteReasonIncompatibleFilters, "%s: RequestRedirect and URLRewrite cannot be combined", where)
	}
	return f
}

func extGroupKind(r *gatewayv1.LocalObjectReference) string {
	if r == nil {
		return ""
	}
	return string(r.Group) + "/" + string(r.Kind)
}

func extName(r *gatewayv1.LocalObjectReference) string {
	if r == nil {
		return ""
	}
	return string(r.Name)
}

func headerModifier(h *gatewayv1.HTTPHeaderFilter) *routing.HeaderModifier {
	if h == nil {
		return nil
	}
	m := &routing.HeaderModifier{}
	for _, x := range h.Set {
		m.Set = append(m.Set, routing.Header{Name: http.CanonicalHeaderKey(string(x.Name)), Value: x.Value})
	}
	for _, x := range h.Add {
		m.Add = append(m.Add, routing.Header{Name: http.CanonicalHeaderKey(string(x.Name)), Value: x.Value})
	}
	for _, x := range h.Remove {
		m.Remove = append(m.Remove, http.CanonicalHeaderKey(x))
	}
	return m
}

func pathModifier(p *gatewayv1.HTTPPathModifier) *routing.PathModifier {
	if p == nil {
		return nil
	}
	switch p.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath != nil {
			return &routing.PathModifier{Type: routing.ReplaceFullPath, Value: *p.ReplaceFullPath}
		}
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch != nil {
			return &routing.PathModifier{Type: routing.ReplacePrefixMatch, Value: *p.ReplacePrefixMatch}
		}
	}
	return nil
}

func redirectOf(r *gatewayv1.HTTPRequestRedirectFilter) *routing.Redirect {
	if r == nil {
		return nil
	}
	out := &routing.Redirect{StatusCode: http.StatusFound, Path: pathModifier(r.Path)}
	if r.Scheme != nil {
		out.Scheme = strings.ToLower(*r.Scheme)
	}
	if r.Hostname != nil {
		out.Hostname = string(*r.Hostname)
	}
	if r.Port != nil {
		out.Port = int(*r.Port)
	}
	if r.StatusCode != nil {
		out.StatusCode = *r.StatusCode
	}
	return out
}

func rewriteOf(r *gatewayv1.HTTPURLRewriteFilter) *routing.Rewrite {
	if r == nil {
		return nil
	}
	out := &routing.Rewrite{Path: pathModifier(r.Path)}
	if r.Hostname != nil {
		out.Hostname = string(*r.Hostname)
	}
	return out
}

// mirror resolves a RequestMirror filter's backend; an unresolved one is
// a ResolvedRefs problem and mirrors nothing.
func (s *state) mirror(rb *routeBuild, route metav1.Object, f *routing.Filters, m *gatewayv1.HTTPRequestMirrorFilter, at string) {
	if m == nil {
		return
	}
	b, reason, msg := s.gwBackend(rb.kind, route, m.BackendRef, mirrorProto(rb.kind), 0)
	if b == nil {
		rb.refs.refProblem(reason, fmt.Sprintf("%s: %s", at, msg))
		return
	}
	share := uint32(1_000_000)
	switch {
	case m.Percent != nil:
		share = uint32(min(max(*m.Percent, 0), 100)) * 10_000
	case m.Fraction != nil:
		den := int64(100)
		if m.Fraction.Denominator != nil && *m.Fraction.Denominator > 0 {
			den = int64(*m.Fraction.Denominator)
		}
		num := min(max(int64(m.Fraction.Numerator), 0), den)
		share = uint32(num * 1_000_000 / den)
	}
	f.Mirrors = append(f.Mirrors, routing.Mirror{Backend: b, PerMillion: share})
}

// mirrorProto is the default upstream protocol of a mirror backend.
func mirrorProto(kind string) routing.Protocol {
	if kind == "GRPCRoute" {
		return routing.ProtocolH2C
	}
	return ""
}
