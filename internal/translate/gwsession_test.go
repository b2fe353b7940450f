package translate

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// withSession sets sessionPersistence on every rule of the route.
func withSession(sp *gatewayv1.SessionPersistence) routeOpt {
	return func(r *gatewayv1.HTTPRoute) {
		for i := range r.Spec.Rules {
			r.Spec.Rules[i].SessionPersistence = sp.DeepCopy()
		}
	}
}

// sessionRoutes translates infra plus route and returns the routes of
// host s.example.com, and the route's parent status line.
func sessionRoutes(t *testing.T, route metav1.Object) ([]routing.Route, string) {
	t.Helper()
	r := Translate(cacheOf(append(infra(t), route)...), gwOpts)
	st := statusDump(r.Gateway)
	i := slices.IndexFunc(st, func(l string) bool { return strings.HasPrefix(l, "HTTPRoute app/s ") })
	if i < 0 {
		t.Fatalf("no status for the route: %v", st)
	}
	var routes []routing.Route
	if vh := r.Table.HTTP.Hosts["s.example.com"]; vh != nil {
		routes = vh.Routes
	}
	return routes, st[i]
}

// The fields of sessionPersistence become the cookie affinity of every
// backend of the rule; unusable values reject the route with
// UnsupportedValue instead of serving it without the persistence it asks
// for.
func TestHTTPRouteSessionPersistence(t *testing.T) {
	prefix := func(p string) []gatewayv1.HTTPRouteMatch {
		return []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, p)}
	}
	two := hrule(prefix("/cart/"), nil, bref("web:8080", 70), bref("api:9090", 30))
	dur := func(s string) *gatewayv1.Duration { return ptr.To(gatewayv1.Duration(s)) }
	permanent := &gatewayv1.CookieConfig{LifetimeType: ptr.To(gatewayv1.PermanentCookieLifetimeType)}
	scope := "HTTPRoute app/s rule 0"
	def := defaultSessionName(&metav1.ObjectMeta{Namespace: "app", Name: "s"}, "HTTPRoute", 0)
	cases := []struct {
		name   string
		rule   routeOpt
		sp     *gatewayv1.SessionPersistence
		want   *routing.CookieAffinity // nil: the route is rejected
		reason string                  // of a rejection
	}{
		{name: "defaults", rule: two, sp: &gatewayv1.SessionPersistence{},
			want: &routing.CookieAffinity{Name: def, Scope: scope, Path: "/cart", SameSite: "Lax", SecureOnTLS: true}},
		{name: "session cookie with an absolute timeout", rule: two,
			sp:   &gatewayv1.SessionPersistence{SessionName: ptr.To("SHOP"), AbsoluteTimeout: dur("1h"), Type: ptr.To(gatewayv1.CookieBasedSessionPersistence)},
			want: &routing.CookieAffinity{Name: "SHOP", Scope: scope, Path: "/cart", SameSite: "Lax", SecureOnTLS: true, Lifetime: time.Hour}},
		{name: "permanent cookie", rule: two,
			sp:   &gatewayv1.SessionPersistence{SessionName: ptr.To("SHOP"), AbsoluteTimeout: dur("5m"), CookieConfig: permanent},
			want: &routing.CookieAffinity{Name: "SHOP", Scope: scope, Path: "/cart", SameSite: "Lax", SecureOnTLS: true, Lifetime: 5 * time.Minute, MaxAge: 5 * time.Minute}},
		{name: "header", rule: two,
			sp:   &gatewayv1.SessionPersistence{SessionName: ptr.To("X-Session"), Type: ptr.To(gatewayv1.HeaderBasedSessionPersistence), AbsoluteTimeout: dur("30s")},
			want: &routing.CookieAffinity{Name: "X-Session", Scope: scope, Header: true, Lifetime: 30 * time.Second}},
		{name: "path of several matches and of an anchored expression",
			rule: hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchExact, "/a/b/c"), pathMatch(gatewayv1.PathMatchRegularExpression, "^/a/b/[0-9]+/x")}, nil, bref("web:8080", -1)),
			sp:   &gatewayv1.SessionPersistence{SessionName: ptr.To("S")},
			want: &routing.CookieAffinity{Name: "S", Scope: scope, Path: "/a/b", SameSite: "Lax", SecureOnTLS: true}},
		{name: "unanchored expression", rule: hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchRegularExpression, "/a/.*")}, nil, bref("web:8080", -1)),
			sp:   &gatewayv1.SessionPersistence{SessionName: ptr.To("S")},
			want: &routing.CookieAffinity{Name: "S", Scope: scope, Path: "/", SameSite: "Lax", SecureOnTLS: true}},
		{name: "invalid name", rule: two, sp: &gatewayv1.SessionPersistence{SessionName: ptr.To("a b;c")}, reason: "UnsupportedValue"},
		{name: "invalid timeout", rule: two, sp: &gatewayv1.SessionPersistence{AbsoluteTimeout: dur("soon")}, reason: "UnsupportedValue"},
		{name: "sub-second timeout", rule: two, sp: &gatewayv1.SessionPersistence{AbsoluteTimeout: dur("500ms")}, reason: "UnsupportedValue"},
		{name: "permanent without a timeout", rule: two, sp: &gatewayv1.SessionPersistence{CookieConfig: permanent}, reason: "UnsupportedValue"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hr := httpRoute("app", "s", []string{"gw"}, []string{"s.example.com"}, c.rule, withSession(c.sp))
			routes, st := sessionRoutes(t, hr)
			if c.want == nil {
				if !strings.Contains(st, "Accepted=False/"+c.reason) || len(routes) != 0 {
					t.Fatalf("status %q, %d routes served; want Accepted=False/%s and none", st, len(routes), c.reason)
				}
				return
			}
			if !strings.Contains(st, "Accepted=True") || len(routes) == 0 {
				t.Fatalf("status %q, %d routes", st, len(routes))
			}
			for _, rt := range routes {
				for _, wb := range rt.Backends {
					if wb.Backend == nil || wb.Backend.Affinity == nil || *wb.Backend.Affinity != *c.want {
						t.Fatalf("backend %+v, want affinity %+v", wb.Backend, *c.want)
					}
				}
			}
		})
	}
}

// Each rule's sessions are its own (a scope of its own, so a distinct
// backend even for the same Service), a rule without sessionPersistence
// shares no backend with them, and generated names differ per rule.
func TestSessionPersistenceScopedToRule(t *testing.T) {
	hr := httpRoute("app", "s", []string{"gw"}, []string{"s.example.com"},
		hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/a")}, nil, bref("web:8080", -1)),
		hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/b")}, nil, bref("web:8080", -1)),
		withSession(&gatewayv1.SessionPersistence{}),
		hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/c")}, nil, bref("web:8080", -1)))
	routes, st := sessionRoutes(t, hr)
	if !strings.Contains(st, "Accepted=True") {
		t.Fatal(st)
	}
	by := map[string]*routing.Backend{}
	for _, rt := range routes {
		by[rt.Path] = rt.Backends[0].Backend
	}
	a, b, c := by["/a"], by["/b"], by["/c"]
	if a == nil || b == nil || c == nil || a == b || a == c || b == c {
		t.Fatalf("backends /a %p /b %p /c %p", a, b, c)
	}
	if a.Affinity == nil || b.Affinity == nil || c.Affinity != nil {
		t.Fatalf("affinity /a %v /b %v /c %v", a.Affinity, b.Affinity, c.Affinity)
	}
	if a.Affinity.Scope == b.Affinity.Scope || a.Affinity.Name == b.Affinity.Name || a.Affinity.Path != "/a" || b.Affinity.Path != "/b" {
		t.Fatalf("rules share a session: %+v %+v", *a.Affinity, *b.Affinity)
	}
}

// GRPCRoute rules map the same way, with the cookie on every path.
func TestGRPCRouteSessionPersistence(t *testing.T) {
	gr := &gatewayv1.GRPCRoute{ObjectMeta: meta("app", "g")}
	gr.Spec.ParentRefs = []gatewayv1.ParentReference{parent("gw")}
	gr.Spec.Hostnames = []gatewayv1.Hostname{"g.example.com"}
	gr.Spec.Rules = []gatewayv1.GRPCRouteRule{{
		BackendRefs:        []gatewayv1.GRPCBackendRef{{BackendRef: bref("web:8080", -1).BackendRef}},
		SessionPersistence: &gatewayv1.SessionPersistence{Type: ptr.To(gatewayv1.HeaderBasedSessionPersistence)},
	}}
	r := Translate(cacheOf(append(infra(t), gr)...), gwOpts)
	vh := r.Table.HTTP.Hosts["g.example.com"]
	if vh == nil || len(vh.Routes) != 1 {
		t.Fatalf("routes: %v", gwDump(r.Table))
	}
	a := vh.Routes[0].Backends[0].Backend.Affinity
	want := routing.CookieAffinity{Name: defaultSessionName(gr, "GRPCRoute", 0), Scope: "GRPCRoute app/g rule 0", Header: true}
	if a == nil || *a != want {
		t.Fatalf("affinity %+v, want %+v", a, want)
	}
}
