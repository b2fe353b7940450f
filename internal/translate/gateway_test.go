package translate

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

var gwOpts = Options{GatewayAddresses: []string{"198.18.0.1"}}

// infra is the base every case shares: our class, a backend Service with
// one endpoint in namespace "app", and a Gateway "gw" in "app" with an HTTP
// listener on port 80 accepting routes from every namespace.
func infra(t *testing.T) []metav1.Object {
	return []metav1.Object{
		ourGWClass(),
		service("app", "web", "http=8080>8080"), slice("app", "web-1", "web", "http", 8080, ready("10.0.0.1")),
		service("app", "api", "http=9090>9090"), slice("app", "api-1", "api", "http", 9090, ready("10.0.0.2")),
		gateway("app", "gw", listener("http", gatewayv1.HTTPProtocolType, 80, fromNS(gatewayv1.NamespacesFromAll, nil))),
	}
}

func TestGatewayTranslate(t *testing.T) {
	cases := []struct {
		name   string
		objs   func(t *testing.T) []metav1.Object
		table  []string // gwDump; nil: not checked
		status []string // lines that must be in statusDump
	}{
		{
			name: "HTTPRoute with matches and weighted backends",
			objs: func(t *testing.T) []metav1.Object {
				return []metav1.Object{httpRoute("app", "r", []string{"gw"}, []string{"a.example.com"},
					hrule([]gatewayv1.HTTPRouteMatch{{
						Path:        &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchExact), Value: ptr.To("/login")},
						Method:      ptr.To(gatewayv1.HTTPMethodPost),
						Headers:     []gatewayv1.HTTPHeaderMatch{{Name: "x-env", Value: "prod"}, {Name: "X-Env", Value: "ignored"}},
						QueryParams: []gatewayv1.HTTPQueryParamMatch{{Name: "v", Value: "2"}},
					}}, nil, bref("web:8080", 3), bref("api:9090", 1)),
					hrule(nil, nil, bref("web:8080", -1)))}
			},
			table: []string{
				`vhost "a.example.com"`,
				`  plain =/login method=POST h:X-Env=prod q:v=2 -> [app/web:8080[10.0.0.1:8080]*3 app/api:9090[10.0.0.2:9090]*1] (HTTPRoute app/r)`,
				`  plain ^/ -> [app/web:8080[10.0.0.1:8080]*1] (HTTPRoute app/r)`,
			},
			status: []string{
				"HTTPRoute app/r parent=gw Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
				"gateway app/gw Accepted=True/Accepted Programmed=True/Programmed addrs=1",
				"  listener http attached=1 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
				"class meshgate Accepted=True/Accepted",
			},
		},
		{
			name: "listener validation",
			objs: func(t *testing.T) []metav1.Object {
				return []metav1.Object{gateway("app", "bad",
					listener("proto", "SCTP", 80),
					listener("port", gatewayv1.HTTPProtocolType, 8080),
					listener("terminate", gatewayv1.TLSProtocolType, 443, certs(gatewayv1.TLSModeTerminate, "c")),
					listener("kinds", gatewayv1.HTTPProtocolType, 80, lhost("k.example.com"), kinds("TCPRoute", "HTTPRoute")),
					listener("nocert", gatewayv1.HTTPSProtocolType, 443, lhost("n.example.com"), certs(gatewayv1.TLSModeTerminate, "missing")),
					listener("foreign", gatewayv1.HTTPSProtocolType, 443, lhost("f.example.com"), certs(gatewayv1.TLSModeTerminate, "other/cert")),
					listener("tcp-on-http", gatewayv1.TCPProtocolType, 80),
				)}
			},
			status: []string{
				"gateway app/bad Accepted=True/ListenersNotValid Programmed=True/Programmed addrs=1",
				"  listener proto attached=0 kinds=[] Accepted=False/UnsupportedProtocol Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=False/Invalid",
				"  listener port attached=0 kinds=[HTTPRoute GRPCRoute] Accepted=False/PortUnavailable Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=False/Invalid",
				// A TLS listener in mode Terminate is served (TLSRoute
				// termination); its certificate Secret is missing here.
				"  listener terminate attached=0 kinds=[TLSRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=False/InvalidCertificateRef Programmed=False/Invalid",
				"  listener kinds attached=0 kinds=[HTTPRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=False/InvalidRouteKinds Programmed=True/Programmed",
				"  listener nocert attached=0 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=False/InvalidCertificateRef Programmed=False/Invalid",
				"  listener foreign attached=0 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=False/RefNotPermitted Programmed=False/Invalid",
				"  listener tcp-on-http attached=0 kinds=[TCPRoute] Accepted=False/PortUnavailable Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=False/Invalid",
			},
		},
		{
			name: "HTTPS listener with a granted cross-namespace certificate",
			objs: func(t *testing.T) []metav1.Object {
				return []metav1.Object{
					tlsSecret(t, "certs", "wild", "secure.example.com"), grant("certs", "Gateway", "app", "Secret"),
					gateway("app", "tls", listener("https", gatewayv1.HTTPSProtocolType, 443, lhost("secure.example.com"), certs(gatewayv1.TLSModeTerminate, "certs/wild"))),
					httpRoute("app", "secure", []string{"tls"}, nil, hrule(nil, nil, bref("web:8080", -1))),
				}
			},
			table: []string{
				`tls "secure.example.com" cert=secure.example.com`,
				`vhost "secure.example.com"`,
				`  tls ^/ -> [app/web:8080[10.0.0.1:8080]*1] (HTTPRoute app/secure)`,
			},
			status: []string{"  listener https attached=1 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed"},
		},
		{
			name: "conflicting listeners",
			objs: func(t *testing.T) []metav1.Object {
				return []metav1.Object{gateway("app", "dup",
					listener("a", gatewayv1.HTTPProtocolType, 80, lhost("x.example.com")),
					listener("b", gatewayv1.HTTPProtocolType, 80, lhost("x.example.com")),
					listener("c", gatewayv1.HTTPProtocolType, 80, lhost("y.example.com")),
				)}
			},
			status: []string{
				"  listener a attached=0 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=True/HostnameConflict ResolvedRefs=True/ResolvedRefs Programmed=False/Invalid",
				"  listener b attached=0 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=True/HostnameConflict ResolvedRefs=True/ResolvedRefs Programmed=False/Invalid",
				"  listener c attached=0 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
			},
		},
		{
			name: "attachment reasons",
			objs: func(t *testing.T) []metav1.Object {
				return []metav1.Object{
					namespace("team", map[string]string{"env": "prod"}), namespace("other", nil),
					gateway("app", "gw2",
						listener("same", gatewayv1.HTTPProtocolType, 80, lhost("same.example.com")),
						listener("sel", gatewayv1.HTTPProtocolType, 80, lhost("*.sel.example.com"), fromNS(gatewayv1.NamespacesFromSelector, map[string]string{"env": "prod"}))),
					httpRoute("other", "not-allowed", []string{"app/gw2#same"}, nil, hrule(nil, nil, bref("web:8080", -1))),
					httpRoute("team", "selected", []string{"app/gw2"}, []string{"a.b.sel.example.com", "nope.example.org"}, hrule(nil, nil)),
					httpRoute("app", "no-section", []string{"gw2#missing"}, nil),
					httpRoute("app", "no-host", []string{"gw2#same"}, []string{"else.example.com"}),
				}
			},
			table: []string{
				`vhost "a.b.sel.example.com"`,
				`  plain ^/ -> [] (HTTPRoute team/selected)`,
			},
			status: []string{
				"HTTPRoute other/not-allowed parent=gw2#same Accepted=False/NotAllowedByListeners ResolvedRefs=False/BackendNotFound",
				"HTTPRoute team/selected parent=gw2 Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
				"HTTPRoute app/no-section parent=gw2#missing Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs",
				"HTTPRoute app/no-host parent=gw2#same Accepted=False/NoMatchingListenerHostname ResolvedRefs=True/ResolvedRefs",
				"  listener sel attached=1 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
			},
		},
		{
			name: "unresolved backends answer 500, the rest still serves",
			objs: func(t *testing.T) []metav1.Object {
				return []metav1.Object{
					httpRoute("app", "refs", []string{"gw"}, []string{"refs.example.com"},
						hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/gone")}, nil, bref("missing:80", -1)),
						hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/split")}, nil, bref("web:8080", 1), bref("web:1", 1)),
						hrule(nil, nil, bref("web:8080", -1))),
					httpRoute("other", "cross", []string{"app/gw"}, []string{"cross.example.com"}, hrule(nil, nil, bref("app/web:8080", -1))),
					httpRoute("app", "bad-regex", []string{"gw"}, []string{"refs.example.com"},
						hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchRegularExpression, "(")}, nil, bref("web:8080", -1))),
				}
			},
			table: []string{
				`vhost "cross.example.com"`,
				`  plain ^/ -> [<500>*1] (HTTPRoute other/cross)`,
				`vhost "refs.example.com"`,
				`  plain ^/split -> [app/web:8080[10.0.0.1:8080]*1 <500>*1] (HTTPRoute app/refs)`,
				`  plain ^/gone -> [<500>*1] (HTTPRoute app/refs)`,
				`  plain ^/ -> [app/web:8080[10.0.0.1:8080]*1] (HTTPRoute app/refs)`,
			},
			status: []string{
				"HTTPRoute app/refs parent=gw Accepted=True/Accepted ResolvedRefs=False/BackendNotFound",
				"HTTPRoute other/cross parent=gw Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted",
				"HTTPRoute app/bad-regex parent=gw Accepted=False/UnsupportedValue ResolvedRefs=True/ResolvedRefs",
			},
		},
		{
			name: "filters",
			objs: func(t *testing.T) []metav1.Object {
				redirect := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{
					Scheme: ptr.To("https"), StatusCode: ptr.To(301)}}
				rewrite := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{
					Hostname: ptr.To(gatewayv1.PreciseHostname("internal")),
					Path:     &gatewayv1.HTTPPathModifier{Type: gatewayv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr.To("/v2")}}}
				hdr := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{
					Set: []gatewayv1.HTTPHeader{{Name: "x-a", Value: "1"}}, Remove: []string{"x-b"}}}
				mirror := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
					BackendRef: gatewayv1.BackendObjectReference{Name: "api", Port: ptr.To(int32(9090))}, Percent: ptr.To(int32(25))}}
				cors := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterCORS, CORS: &gatewayv1.HTTPCORSFilter{}}
				return []metav1.Object{
					httpRoute("app", "f", []string{"gw"}, []string{"f.example.com"},
						hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/old")}, []gatewayv1.HTTPRouteFilter{redirect}),
						hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/v1")}, []gatewayv1.HTTPRouteFilter{rewrite, hdr, mirror}, bref("web:8080", -1))),
					httpRoute("app", "both", []string{"gw"}, []string{"both.example.com"}, hrule(nil, []gatewayv1.HTTPRouteFilter{redirect, rewrite})),
					httpRoute("app", "cors", []string{"gw"}, []string{"cors.example.com"}, hrule(nil, []gatewayv1.HTTPRouteFilter{cors}, bref("web:8080", -1))),
				}
			},
			table: []string{
				`vhost "f.example.com"`,
				`  plain ^/old redirect(https  <nil> 0 lp=80 301) (HTTPRoute app/f)`,
				`  plain ^/v1 -> [app/web:8080[10.0.0.1:8080]*1] reqhdr(set=[{X-A 1}] add=[] rm=[X-B]) rewrite(internal &{2 /v2}) mirror(app/api:9090 250000) (HTTPRoute app/f)`,
			},
			status: []string{
				"HTTPRoute app/both parent=gw Accepted=False/IncompatibleFilters ResolvedRefs=True/ResolvedRefs",
				"HTTPRoute app/cors parent=gw Accepted=False/UnsupportedValue ResolvedRefs=True/ResolvedRefs",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs := append(infra(t), c.objs(t)...)
			r := Translate(cacheOf(objs...), gwOpts)
			if c.table != nil {
				got := gwDump(r.Table)
				// the infra Gateway's catch-all is not part of every case
				if !slices.Equal(got, c.table) {
					t.Errorf("table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.table, "\n"))
				}
			}
			st := statusDump(r.Gateway)
			for _, want := range c.status {
				if !slices.Contains(st, want) {
					t.Errorf("status lacks %q; got:\n%s", want, strings.Join(st, "\n"))
				}
			}
			if t.Failed() {
				t.Logf("problems: %v", problemStrings(r.Problems))
			}
		})
	}
}

func TestGatewayClassesAndAddresses(t *testing.T) {
	params := gwClass("with-params", DefaultGatewayControllerName)
	params.Spec.ParametersRef = &gatewayv1.ParametersReference{Group: "", Kind: "ConfigMap", Name: "x"}
	gwParams := gateway("app", "p", listener("http", gatewayv1.HTTPProtocolType, 80))
	gwParams.Spec.GatewayClassName = "with-params"
	foreign := gateway("app", "foreign", listener("http", gatewayv1.HTTPProtocolType, 80))
	foreign.Spec.GatewayClassName = "other"
	static := gateway("app", "static", listener("http", gatewayv1.HTTPProtocolType, 80))
	static.Spec.Addresses = []gatewayv1.GatewaySpecAddress{{Value: "203.0.113.9"}}
	objs := []metav1.Object{ourGWClass(), gwClass("other", "example.com/other"), params, gwParams, foreign, static,
		gateway("app", "plain", listener("http", gatewayv1.HTTPProtocolType, 80))}

	st := statusDump(Translate(cacheOf(objs...), Options{}).Gateway)
	want := []string{
		"class meshgate Accepted=True/Accepted",
		"class with-params Accepted=False/InvalidParameters",
		"gateway app/plain Accepted=True/Accepted Programmed=False/AddressNotAssigned addrs=0",
		"gateway app/static Accepted=False/UnsupportedAddress Programmed=False/AddressNotUsable addrs=0",
	}
	for _, w := range want {
		if !slices.Contains(st, w) {
			t.Errorf("status lacks %q; got:\n%s", w, strings.Join(st, "\n"))
		}
	}
	for _, line := range st {
		if strings.Contains(line, "foreign") || strings.Contains(line, "app/p ") || strings.Contains(line, "class other") {
			t.Errorf("status for an object that is not ours: %q", line)
		}
	}
}

// TestGatewayAndIngressShareTable checks that an Ingress and a Gateway
// route for the same host end up in one virtual host, each on its front
// ends, and that a Gateway certificate does not make the Ingress redirect.
func TestGatewayAndIngressShareTable(t *testing.T) {
	objs := append(infra(t), ourClass(false),
		tlsSecret(t, "app", "cert", "both.example.com"),
		gateway("app", "tls", listener("https", gatewayv1.HTTPSProtocolType, 443, lhost("both.example.com"), certs(gatewayv1.TLSModeTerminate, "cert"))),
		ingress("app", "ing", rule("both.example.com", pathSpec{prefixT, "/ingress", "web", "http"})),
		httpRoute("app", "r", []string{"gw", "tls"}, []string{"both.example.com"}, hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/gw")}, nil, bref("api:9090", -1))),
	)
	r := Translate(cacheOf(objs...), gwOpts)
	vh := r.Table.HTTP.Hosts["both.example.com"]
	if vh == nil {
		t.Fatalf("no vhost; table:\n%s", strings.Join(gwDump(r.Table), "\n"))
	}
	if vh.SSLRedirect {
		t.Error("a Gateway listener certificate made the host redirect plain HTTP")
	}
	var got []string
	for _, rt := range vh.Routes {
		got = append(got, []string{"all", "plain", "tls"}[rt.Scope]+" "+rt.Path)
	}
	if want := []string{"all /ingress", "plain /gw", "tls /gw"}; !slices.Equal(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
	if r.Table.TLS.Exact["both.example.com"] == nil {
		t.Error("the HTTPS listener's certificate is not served")
	}
	if len(r.Problems) != 0 {
		t.Errorf("problems: %v", problemStrings(r.Problems))
	}
	// Ingress-only input still builds exactly as before: no Gateway status.
	ingOnly := Translate(cacheOf(ourClass(false), ingress("app", "ing", rule("x.example.com", pathSpec{prefixT, "/", "web", "http"}))), Options{})
	if len(ingOnly.Gateway.Gateways)+len(ingOnly.Gateway.Routes)+len(ingOnly.Gateway.Classes) != 0 {
		t.Errorf("Gateway status without Gateway objects: %+v", ingOnly.Gateway)
	}
}

func TestGatewayWildcardListenerIsDeep(t *testing.T) {
	objs := append(infra(t), gateway("app", "wild", listener("http", gatewayv1.HTTPProtocolType, 80, lhost("*.example.net"))),
		httpRoute("app", "w", []string{"wild"}, nil, hrule(nil, nil, bref("web:8080", -1))))
	r := Translate(cacheOf(objs...), gwOpts)
	vh := r.Table.HTTP.Lookup("a.b.example.net")
	if vh == nil || vh.Name != "*.example.net" {
		t.Fatalf("Lookup(a.b.example.net) = %v; table:\n%s", vh, strings.Join(gwDump(r.Table), "\n"))
	}
	if rt := vh.MatchRequest(fakeReq{path: "/x"}, false); rt == nil || rt.Scope != routing.ScopePlain {
		t.Errorf("route = %+v", rt)
	}
}

type fakeReq struct{ method, path string }

func (r fakeReq) Method() string               { return r.method }
func (r fakeReq) Path() string                 { return r.path }
func (r fakeReq) Header(string) (string, bool) { return "", false }
func (r fakeReq) Query(string) (string, bool)  { return "", false }

// TestTLSPolicyTargetRefs attaches TLSPolicies to a Gateway and to one of
// its listeners: the listener's policy wins, a second policy for the same
// target is Conflicted, missing targets are TargetNotFound, and the TLS
// hosts of the listeners carry the policy (so sessions bind to it).
func TestTLSPolicyTargetRefs(t *testing.T) {
	target := func(name, section string) v1alpha1.PolicyTargetReference {
		return v1alpha1.PolicyTargetReference{Group: gatewayv1.GroupName, Kind: "Gateway", Name: name, SectionName: section}
	}
	gwPol := policy("app", "gw-wide", v1alpha1.TLSPolicySpec{MinVersion: "1.3", TargetRefs: []v1alpha1.PolicyTargetReference{target("tls", ""), target("nope", "")}})
	lPol := policy("app", "listener", v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{Mode: v1alpha1.SessionResumptionTicketKeys},
		TargetRefs: []v1alpha1.PolicyTargetReference{target("tls", "b"), target("tls", "missing")}})
	late := policy("app", "late", v1alpha1.TLSPolicySpec{TargetRefs: []v1alpha1.PolicyTargetReference{target("tls", "b")}})
	late.CreationTimestamp = metav1.NewTime(epoch.Add(time.Hour))
	objs := append(infra(t), tlsSecret(t, "app", "a", "a.example.com"), tlsSecret(t, "app", "b", "b.example.com"),
		gateway("app", "tls",
			listener("a", gatewayv1.HTTPSProtocolType, 443, lhost("a.example.com"), certs(gatewayv1.TLSModeTerminate, "a")),
			listener("b", gatewayv1.HTTPSProtocolType, 443, lhost("b.example.com"), certs(gatewayv1.TLSModeTerminate, "b"))),
		gwPol, lPol, late)
	r := Translate(cacheOf(objs...), gwOpts)
	if p := r.Table.TLS.Exact["a.example.com"].Policy; p.Name != "app/gw-wide" || p.MinVersion != tls.VersionTLS13 {
		t.Errorf("a.example.com policy = %+v", p)
	}
	if p := r.Table.TLS.Exact["b.example.com"].Policy; p.Name != "app/listener" || p.SessionMode != routing.SessionTicketKeys {
		t.Errorf("b.example.com policy = %+v", p)
	}
	reasons := func(name string) []string {
		var out []string
		for _, a := range r.Gateway.TLSPolicies[types.NamespacedName{Namespace: "app", Name: name}] {
			out = append(out, a.AncestorRef.Name+"/"+a.AncestorRef.SectionName+"="+a.Conditions[0].Reason)
		}
		return out
	}
	for name, want := range map[string][]string{
		"gw-wide":  {"tls/=Accepted", "nope/=TargetNotFound"},
		"listener": {"tls/b=Accepted", "tls/missing=TargetNotFound"},
		"late":     {"tls/b=Conflicted"},
	} {
		if got := reasons(name); !slices.Equal(got, want) {
			t.Errorf("%s ancestors = %v, want %v", name, got, want)
		}
	}
}
