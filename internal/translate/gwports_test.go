package translate

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// portsGateway has HTTP listeners on 80 and 5300, an HTTPS listener on
// 8443 and a TLS passthrough listener on 9443, with one route each (the
// two HTTP routes for the same host), and a TCPRoute attached to the HTTP
// listener on 5300 (the suite's TCPRouteInvalidNonTCPListener).
func portsGateway(t *testing.T) []metav1.Object {
	tr := &gatewayv1.TLSRoute{ObjectMeta: meta("app", "pass")}
	tr.Spec.ParentRefs = []gatewayv1.ParentReference{parent("multi#tls9443")}
	tr.Spec.Rules = []gatewayv1.TLSRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref("web", 8080, 1)}}}
	tcp := &gatewayv1.TCPRoute{ObjectMeta: meta("app", "tcp-on-http")}
	tcp.Spec.ParentRefs = []gatewayv1.ParentReference{parent("multi#http5300")}
	tcp.Spec.Rules = []gatewayv1.TCPRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref("web", 8080, 1)}}}
	return []metav1.Object{
		ourGWClass(), tlsSecret(t, "app", "cert", "secure.example.com"),
		service("app", "web", "http=8080>8080"), slice("app", "web-1", "web", "http", 8080, ready("10.0.0.1")),
		service("app", "api", "http=9090>9090"), slice("app", "api-1", "api", "http", 9090, ready("10.0.0.2")),
		gateway("app", "multi",
			listener("http80", gatewayv1.HTTPProtocolType, 80),
			listener("http5300", gatewayv1.HTTPProtocolType, 5300, kinds("HTTPRoute")),
			listener("https8443", gatewayv1.HTTPSProtocolType, 8443, lhost("secure.example.com"), certs(gatewayv1.TLSModeTerminate, "cert")),
			listener("tls9443", gatewayv1.TLSProtocolType, 9443, lhost("pass.example.com"), certs(gatewayv1.TLSModePassthrough)),
		),
		httpRoute("app", "on-80", []string{"multi#http80"}, []string{"a.example.com"}, hrule(nil, nil, bref("web:8080", 1))),
		httpRoute("app", "on-5300", []string{"multi#http5300"}, []string{"a.example.com"}, hrule(nil, nil, bref("api:9090", 1))),
		httpRoute("app", "secure", []string{"multi#https8443"}, nil, hrule(nil, nil, bref("web:8080", 1))),
		tr, tcp,
	}
}

// TestGatewayListenersOnAnyPort checks that a Gateway on an address of its
// own serves HTTP, HTTPS and TLS listeners on any port: one frontend per
// port with the server its listeners need, each routing only the routes
// of its own listeners, and a TCPRoute on an HTTP listener refused with
// NotAllowedByListeners while the Gateway is Accepted.
func TestGatewayListenersOnAnyPort(t *testing.T) {
	opts := gwOpts
	opts.GatewayAddressPool = pool(t, "127.0.81.1")
	r := Translate(cacheOf(portsGateway(t)...), opts)

	statusHas(t, r.Gateway,
		"gateway app/multi Accepted=True/Accepted Programmed=True/Programmed addrs=1",
		"  listener http80 attached=1 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
		"  listener http5300 attached=1 kinds=[HTTPRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
		"  listener https8443 attached=1 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
		"  listener tls9443 attached=1 kinds=[TLSRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
		"TCPRoute app/tcp-on-http parent=multi#http5300 Accepted=False/NotAllowedByListeners ResolvedRefs=True/ResolvedRefs",
	)

	want := map[netip.AddrPort]struct {
		kind  routing.FrontendKind
		table []string
	}{
		at("127.0.81.1", 80): {routing.FrontendHTTP, []string{
			`vhost "a.example.com"`, `  plain ^/ -> [app/web:8080[10.0.0.1:8080]*1] (HTTPRoute app/on-80)`}},
		at("127.0.81.1", 5300): {routing.FrontendHTTP, []string{
			`vhost "a.example.com"`, `  plain ^/ -> [app/api:9090[10.0.0.2:9090]*1] (HTTPRoute app/on-5300)`}},
		at("127.0.81.1", 8443): {routing.FrontendTLS, []string{
			`tls "secure.example.com" cert=secure.example.com`,
			`vhost "secure.example.com"`, `  tls ^/ -> [app/web:8080[10.0.0.1:8080]*1] (HTTPRoute app/secure)`}},
		at("127.0.81.1", 9443): {routing.FrontendTLS, []string{
			`passthrough "pass.example.com" -> app/web:8080[10.0.0.1:8080]`}},
	}
	if len(r.Table.Frontends) != len(want) {
		var keys []string
		for k := range r.Table.Frontends {
			keys = append(keys, k.String())
		}
		t.Fatalf("frontends %v, want %d", keys, len(want))
	}
	for a, w := range want {
		ft := r.Table.Frontends[a]
		if ft == nil {
			t.Errorf("no frontend %s", a)
			continue
		}
		if ft.Kind != w.kind {
			t.Errorf("frontend %s runs %v, want %v", a, ft.Kind, w.kind)
		}
		if got := gwDump(ft); !slices.Equal(got, sortBlocks(w.table)) {
			t.Errorf("frontend %s:\n%s\nwant:\n%s", a, strings.Join(got, "\n"), strings.Join(sortBlocks(w.table), "\n"))
		}
	}
	if len(r.Table.L4) != 0 {
		t.Errorf("the TCPRoute on an HTTP listener is served: %v", r.Table.L4)
	}
}

// TestMergedGatewayOtherPortsUnavailable checks that without an address
// pool HTTP, HTTPS and TLS listeners must use meshgate's two front ends'
// ports: the others are PortUnavailable, with a message naming the flag
// that lifts the limit, and nothing of them is served.
func TestMergedGatewayOtherPortsUnavailable(t *testing.T) {
	r := Translate(cacheOf(portsGateway(t)...), gwOpts)
	gs := r.Gateway.Gateways[types.NamespacedName{Namespace: "app", Name: "multi"}]
	for _, l := range gs.Listeners {
		var acc *metav1.Condition
		for i := range l.Conditions {
			if l.Conditions[i].Type == string(gatewayv1.ListenerConditionAccepted) {
				acc = &l.Conditions[i]
			}
		}
		if acc == nil {
			t.Fatalf("listener %s has no Accepted condition", l.Name)
		}
		if l.Name == "http80" {
			if acc.Status != metav1.ConditionTrue {
				t.Errorf("listener http80 on meshgate's HTTP port: Accepted %s/%s", acc.Status, acc.Reason)
			}
			continue
		}
		if acc.Status != metav1.ConditionFalse || acc.Reason != string(gatewayv1.ListenerReasonPortUnavailable) ||
			!strings.Contains(acc.Message, "--gateway-address-pool") {
			t.Errorf("listener %s: Accepted %s/%s %q, want False/PortUnavailable naming --gateway-address-pool", l.Name, acc.Status, acc.Reason, acc.Message)
		}
	}
	dump := strings.Join(gwDump(r.Table), "\n")
	for _, never := range []string{"app/on-5300", "secure.example.com", "pass.example.com"} {
		if strings.Contains(dump, never) {
			t.Errorf("merged table serves %s of a listener on another port:\n%s", never, dump)
		}
	}
	if len(r.Table.Frontends) != 0 {
		t.Errorf("merged mode has %d frontends", len(r.Table.Frontends))
	}
}

// TestTLSRouteTerminate checks TLS listeners in mode Terminate: on a
// Gateway's own address, one beside a Passthrough listener on the same
// port (the suite's mixed termination), the terminated name gets the
// listener's certificate as a stream host and its TLSRoute's backend in
// Terminated, the passed-through name stays in Passthrough, and both
// listeners are Programmed with their route attached; merged onto
// meshgate's own addresses, the same holds on the TLS port.
func TestTLSRouteTerminate(t *testing.T) {
	tlsRoute := func(name, section, host, svc string, port int32) *gatewayv1.TLSRoute {
		tr := &gatewayv1.TLSRoute{ObjectMeta: meta("app", name)}
		tr.Spec.ParentRefs = []gatewayv1.ParentReference{parent(section)}
		tr.Spec.Hostnames = []gatewayv1.Hostname{gatewayv1.Hostname(host)}
		tr.Spec.Rules = []gatewayv1.TLSRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref(svc, port, 1)}}}
		return tr
	}
	for _, c := range []struct {
		name string
		pool string
		port int32
		key  func(r Result) netip.AddrPort
	}{
		{"own address", "127.0.81.1", 8883, func(Result) netip.AddrPort { return at("127.0.81.1", 8883) }},
		{"merged", "", 443, func(Result) netip.AddrPort { return netip.AddrPort{} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := []metav1.Object{
				ourGWClass(), tlsSecret(t, "app", "cert", "tls.example.com"),
				service("app", "plain", "tcp=3000>3000"), slice("app", "plain-1", "plain", "tcp", 3000, ready("10.0.0.3")),
				service("app", "web", "http=8080>8080"), slice("app", "web-1", "web", "http", 8080, ready("10.0.0.1")),
				gateway("app", "mixed",
					listener("terminate", gatewayv1.TLSProtocolType, c.port, lhost("tls.example.com"), certs(gatewayv1.TLSModeTerminate, "cert")),
					listener("pass", gatewayv1.TLSProtocolType, c.port, lhost("abc.example.com"), certs(gatewayv1.TLSModePassthrough)),
				),
				tlsRoute("term", "mixed#terminate", "tls.example.com", "plain", 3000),
				tlsRoute("pass", "mixed#pass", "abc.example.com", "web", 8080),
			}
			opts := gwOpts
			if c.pool != "" {
				opts.GatewayAddressPool = pool(t, c.pool)
			}
			r := Translate(cacheOf(objs...), opts)
			statusHas(t, r.Gateway,
				"  listener terminate attached=1 kinds=[TLSRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
				"  listener pass attached=1 kinds=[TLSRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
				"TLSRoute app/term parent=mixed#terminate Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
			)
			ft := r.Table.For(c.key(r))
			if ft == nil || (c.pool != "" && ft.Kind != routing.FrontendTLS) {
				t.Fatalf("no TLS frontend %s", c.key(r))
			}
			h := ft.TLS.Exact["tls.example.com"]
			if h == nil || !h.Stream || h.Certificate.Leaf.Subject.CommonName != "tls.example.com" {
				t.Errorf("terminated name's TLS host = %+v, want the listener's certificate as a stream host", h)
			}
			if b := ft.TerminatedFor("TLS.example.com"); b == nil || b.Name != "app/plain:3000" || !slices.Equal(b.Endpoints, []string{"10.0.0.3:3000"}) {
				t.Errorf("TerminatedFor(tls.example.com) = %+v", b)
			}
			if ft.PassthroughFor("tls.example.com") != nil || ft.TerminatedFor("abc.example.com") != nil {
				t.Error("a terminated name is passed through, or a passed-through one terminated")
			}
			if b := ft.PassthroughFor("abc.example.com"); b == nil || b.Name != "app/web:8080" {
				t.Errorf("PassthroughFor(abc.example.com) = %+v", b)
			}
		})
	}
}

// statusHas fails t for each line of want that the dump of st lacks.
func statusHas(t *testing.T, st *GatewayStatuses, want ...string) {
	t.Helper()
	got := statusDump(st)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("status lacks %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
}
