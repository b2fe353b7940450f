package translate

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestParseAddressPool(t *testing.T) {
	cases := []struct {
		spec string
		want []string // nil with err
		err  string
	}{
		{spec: "", want: []string{}},
		{spec: "127.0.81.1", want: []string{"127.0.81.1"}},
		{spec: "127.0.81.4-127.0.81.6, 127.0.81.1", want: []string{"127.0.81.1", "127.0.81.4", "127.0.81.5", "127.0.81.6"}},
		{spec: "10.1.1.5/30", want: []string{"10.1.1.4", "10.1.1.5", "10.1.1.6", "10.1.1.7"}},
		{spec: "10.0.0.1,10.0.0.0/31", want: []string{"10.0.0.0", "10.0.0.1"}}, // duplicates once
		{spec: "2001:db8::/127", want: []string{"2001:db8::", "2001:db8::1"}},
		{spec: "10.0.0.0/16", err: "more than 4096"},
		{spec: "10.0.0.9-10.0.0.1", err: "not a range"},
		{spec: "10.0.0.1-2001:db8::1", err: "not a range"},
		{spec: "gateway.example.com", err: `"gateway.example.com"`},
	}
	for _, tc := range cases {
		got, err := ParseAddressPool(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseAddressPool(%q) error = %v, want one containing %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseAddressPool(%q): %v", tc.spec, err)
			continue
		}
		strs := []string{}
		for _, a := range got {
			strs = append(strs, a.String())
		}
		if !slices.Equal(strs, tc.want) {
			t.Errorf("ParseAddressPool(%q) = %v, want %v", tc.spec, strs, tc.want)
		}
	}
}

func pool(t *testing.T, spec string) []netip.Addr {
	t.Helper()
	p, err := ParseAddressPool(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// aged makes gw minutes younger than the fixtures' epoch.
func aged(gw *gatewayv1.Gateway, minutes int) *gatewayv1.Gateway {
	gw.CreationTimestamp = metav1.NewTime(epoch.Add(timeMinutes(minutes)))
	return gw
}

func withStatusAddr(gw *gatewayv1.Gateway, a string) *gatewayv1.Gateway {
	gw.Status.Addresses = []gatewayv1.GatewayStatusAddress{{Type: ptr.To(gatewayv1.IPAddressType), Value: a}}
	return gw
}

// statusAddr is the one address the status publishes for gateway ns/name.
func statusAddr(t *testing.T, r Result, ns, name string) string {
	t.Helper()
	st, ok := r.Gateway.Gateways[types.NamespacedName{Namespace: ns, Name: name}]
	if !ok {
		t.Fatalf("no status for gateway %s/%s", ns, name)
	}
	if len(st.Addresses) != 1 {
		t.Fatalf("gateway %s/%s publishes %d addresses, want 1", ns, name, len(st.Addresses))
	}
	return st.Addresses[0].Value
}

// TestPerGatewayAddresses checks that with a pool every Gateway is served
// from a frontend table of its own: two Gateways routing the same request
// differently each keep their route, the Ingress stays on meshgate's own
// addresses, and each status publishes its Gateway's address.
func TestPerGatewayAddresses(t *testing.T) {
	objs := []metav1.Object{
		ourGWClass(), ourClass(true),
		service("app", "web", "http=8080>8080"), slice("app", "web-1", "web", "http", 8080, ready("10.0.0.1")),
		service("app", "api", "http=9090>9090"), slice("app", "api-1", "api", "http", 9090, ready("10.0.0.2")),
		gateway("app", "one", listener("http", gatewayv1.HTTPProtocolType, 80), listener("tcp", gatewayv1.TCPProtocolType, 9000)),
		aged(gateway("app", "two", listener("http", gatewayv1.HTTPProtocolType, 80), listener("tcp", gatewayv1.TCPProtocolType, 9000)), 1),
		httpRoute("app", "to-web", []string{"one"}, []string{"same.example.com"}, hrule(nil, nil, bref("web:8080", 1))),
		httpRoute("app", "to-api", []string{"two"}, []string{"same.example.com"}, hrule(nil, nil, bref("api:9090", 1))),
		ingress("app", "ing", rule("ing.example.com", pathSpec{path: "/", svc: "web", port: 8080})),
	}
	tcp := func(name, gw, svc string, port int32) *gatewayv1.TCPRoute {
		r := &gatewayv1.TCPRoute{ObjectMeta: meta("app", name)}
		r.Spec.ParentRefs = []gatewayv1.ParentReference{parent(gw + "#tcp")}
		r.Spec.Rules = []gatewayv1.TCPRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref(svc, port, 1)}}}
		return r
	}
	objs = append(objs, tcp("tcp-one", "one", "web", 8080), tcp("tcp-two", "two", "api", 9090))
	opts := gwOpts
	opts.GatewayAddressPool = pool(t, "127.0.81.1-127.0.81.2")
	r := Translate(cacheOf(objs...), opts)

	main := strings.Join(gwDump(r.Table), "\n")
	if strings.Contains(main, "same.example.com") {
		t.Errorf("meshgate's own table serves a Gateway's host:\n%s", main)
	}
	if !strings.Contains(main, `vhost "ing.example.com"`) {
		t.Errorf("meshgate's own table lacks the Ingress:\n%s", main)
	}
	if len(r.Table.Frontends) != 2 {
		t.Fatalf("%d frontends, want 2", len(r.Table.Frontends))
	}
	one, two := statusAddr(t, r, "app", "one"), statusAddr(t, r, "app", "two")
	if one == two {
		t.Fatalf("both Gateways publish %s", one)
	}
	for gw, want := range map[string]string{one: "app/web:8080", two: "app/api:9090"} {
		ft := r.Table.Frontends[at(gw, 80)]
		if ft == nil {
			t.Fatalf("no frontend for the published address %s", gw)
		}
		vh := ft.HTTP.Lookup("same.example.com")
		if vh == nil || len(vh.Routes) != 1 || len(vh.Routes[0].Backends) != 1 || vh.Routes[0].Backends[0].Backend.Name != want {
			t.Errorf("frontend %s does not route same.example.com to %s alone:\n%s", gw, want, strings.Join(gwDump(ft), "\n"))
		}
		if ft.HTTP.Lookup("ing.example.com") != nil {
			t.Errorf("frontend %s serves the Ingress host", gw)
		}
	}
	// TCP port 9000 is served on each Gateway's address, by its own route.
	var l4 []string
	for _, s := range r.Table.L4 {
		l4 = append(l4, s.Addr.String()+"/"+s.Backend.Name)
	}
	wantL4 := []string{one + "/app/web:8080", two + "/app/api:9090"}
	slices.Sort(wantL4)
	if !slices.Equal(l4, wantL4) {
		t.Errorf("L4 = %v, want %v (problems %v)", l4, wantL4, problemStrings(r.Problems))
	}
	statusHas(t, r.Gateway,
		"gateway app/one Accepted=True/Accepted Programmed=True/Programmed addrs=1",
		"gateway app/two Accepted=True/Accepted Programmed=True/Programmed addrs=1",
	)
}

// TestGatewayAddressConditions checks the spec's conditions for
// addresses that cannot be used, and that a Gateway without an address
// serves nothing anywhere.
func TestGatewayAddressConditions(t *testing.T) {
	req := func(gw *gatewayv1.Gateway, typ gatewayv1.AddressType, v string) *gatewayv1.Gateway {
		gw.Spec.Addresses = append(gw.Spec.Addresses, gatewayv1.GatewaySpecAddress{Type: ptr.To(typ), Value: v})
		return gw
	}
	http := func(ns, name string, minutes int) *gatewayv1.Gateway {
		return aged(gateway(ns, name, listener("http", gatewayv1.HTTPProtocolType, 80)), minutes)
	}
	objs := []metav1.Object{
		ourGWClass(),
		service("app", "web", "http=8080>8080"), slice("app", "web-1", "web", "http", 8080, ready("10.0.0.1")),
		req(http("app", "static", 0), gatewayv1.IPAddressType, "127.0.81.2"),
		req(http("app", "outside", 1), gatewayv1.IPAddressType, "192.0.2.1"),
		req(http("app", "stolen", 2), gatewayv1.IPAddressType, "127.0.81.2"),
		req(http("app", "named", 3), gatewayv1.HostnameAddressType, "gw.example.com"),
		req(http("app", "any", 4), gatewayv1.IPAddressType, ""), // an address of the pool, any
		http("app", "late", 5),
		httpRoute("app", "r", []string{"late"}, []string{"late.example.com"}, hrule(nil, nil, bref("web:8080", 1))),
	}
	opts := gwOpts
	opts.GatewayAddressPool = pool(t, "127.0.81.1-127.0.81.2")
	r := Translate(cacheOf(objs...), opts)
	if got := statusAddr(t, r, "app", "static"); got != "127.0.81.2" {
		t.Errorf("static got %s, want the requested 127.0.81.2", got)
	}
	if got := statusAddr(t, r, "app", "any"); got != "127.0.81.1" {
		t.Errorf("any got %s, want the pool's other address 127.0.81.1", got)
	}
	statusHas(t, r.Gateway,
		"gateway app/static Accepted=True/Accepted Programmed=True/Programmed addrs=1",
		"gateway app/outside Accepted=True/Accepted Programmed=False/AddressNotUsable addrs=0",
		"gateway app/stolen Accepted=True/Accepted Programmed=False/AddressNotUsable addrs=0",
		"gateway app/named Accepted=False/UnsupportedAddress Programmed=False/AddressNotUsable addrs=0",
		"gateway app/late Accepted=True/Accepted Programmed=False/AddressNotAssigned addrs=0",
		"  listener http attached=1 kinds=[HTTPRoute GRPCRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=False/Invalid",
	)
	all := gwDump(r.Table)
	for _, ft := range r.Table.Frontends {
		all = append(all, gwDump(ft)...)
	}
	if s := strings.Join(all, "\n"); strings.Contains(s, "late.example.com") {
		t.Errorf("the route of a Gateway without an address is served:\n%s", s)
	}
}

// TestGatewayAddressesStay checks that an address a Gateway's status
// publishes stays its own while it lives, even when an older Gateway
// appears whose probe would start there.
func TestGatewayAddressesStay(t *testing.T) {
	base := []metav1.Object{ourGWClass()}
	young := aged(gateway("app", "young", listener("http", gatewayv1.HTTPProtocolType, 80)), 10)
	opts := gwOpts
	opts.GatewayAddressPool = pool(t, "127.0.81.0/29")
	first := statusAddr(t, Translate(cacheOf(append(base, young)...), opts), "app", "young")

	// Find a name whose probe, alone, would start at young's address.
	var old *gatewayv1.Gateway
	for i := 0; i < 200 && old == nil; i++ {
		g := gateway("app", "old-"+strings.Repeat("x", i), listener("http", gatewayv1.HTTPProtocolType, 80))
		if statusAddr(t, Translate(cacheOf(ourGWClass(), g), opts), g.Namespace, g.Name) == first {
			old = g
		}
	}
	if old == nil {
		t.Fatal("no Gateway name probes to young's address")
	}
	r := Translate(cacheOf(append(base, old, withStatusAddr(young, first))...), opts)
	if got := statusAddr(t, r, "app", "young"); got != first {
		t.Errorf("young moved from %s to %s", first, got)
	}
	if got := statusAddr(t, r, old.Namespace, old.Name); got == first {
		t.Errorf("the older Gateway took young's address %s", got)
	}
}

// TestFrontendTLSIsolation checks that a Gateway's TLS frontend only has
// its own certificates: the default certificate of another Gateway's
// HTTPS listener without hostname does not answer for it.
func TestFrontendTLSIsolation(t *testing.T) {
	objs := []metav1.Object{
		ourGWClass(), tlsSecret(t, "app", "cert", "any.example.com"),
		service("app", "web", "http=8080>8080"), slice("app", "web-1", "web", "http", 8080, ready("10.0.0.1")),
		gateway("app", "https", listener("https", gatewayv1.HTTPSProtocolType, 443, certs(gatewayv1.TLSModeTerminate, "cert"))),
		aged(gateway("app", "pass", listener("tls", gatewayv1.TLSProtocolType, 443, lhost("abc.example.com"), certs(gatewayv1.TLSModePassthrough))), 1),
	}
	tr := &gatewayv1.TLSRoute{ObjectMeta: meta("app", "pass")}
	tr.Spec.ParentRefs = []gatewayv1.ParentReference{parent("pass")}
	tr.Spec.Rules = []gatewayv1.TLSRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref("web", 8080, 1)}}}
	objs = append(objs, tr)
	opts := gwOpts
	opts.GatewayAddressPool = pool(t, "127.0.81.1-127.0.81.2")
	r := Translate(cacheOf(objs...), opts)
	https := r.Table.Frontends[at(statusAddr(t, r, "app", "https"), 443)]
	pass := r.Table.Frontends[at(statusAddr(t, r, "app", "pass"), 443)]
	if https.TLS.Default == nil {
		t.Error("the HTTPS Gateway's frontend has no default certificate")
	}
	if pass.TLS.Lookup("non.matching.com") != nil {
		t.Error("the passthrough Gateway's frontend answers a name none of its listeners serves")
	}
	if b := pass.PassthroughFor("abc.example.com"); b == nil || b.Name != "app/web:8080" {
		t.Errorf("passthrough abc.example.com = %v", b)
	}
	if r.Table.TLS.Default != nil || r.Table.PassthroughFor("abc.example.com") != nil {
		t.Error("meshgate's own table serves a Gateway's TLS")
	}
}

// TestTableFor checks routing.Table.For on a translated table.
func TestTableFor(t *testing.T) {
	opts := gwOpts
	opts.GatewayAddressPool = pool(t, "127.0.81.1")
	r := Translate(cacheOf(ourGWClass(), gateway("app", "gw", listener("http", gatewayv1.HTTPProtocolType, 80))), opts)
	if r.Table.For(netip.AddrPort{}) != r.Table {
		t.Error("For(zero) is not the table itself")
	}
	if f := r.Table.For(at("127.0.81.1", 80)); f == nil || f == r.Table || f != r.Table.Frontends[at("127.0.81.1", 80)] {
		t.Error("For(frontend) is not the frontend's table")
	}
	var empty routing.Table
	for _, a := range []netip.AddrPort{at("127.0.81.9", 80), at("127.0.81.1", 443)} {
		if f := r.Table.For(a); f == nil || f.HTTP.Hosts != nil || f.TLS.Default != nil {
			t.Errorf("For(%s) = %+v, want an empty table like %+v", a, f, empty)
		}
	}
}

// TestTLSRouteWildcardPassthrough checks that a TLSRoute's wildcard
// hostname passes through names of any depth under it (Gateway API
// wildcards match one or more labels; TLSRouteHostnameIntersection sends
// other.example.com to a "*.com" route), the more specific name winning.
func TestTLSRouteWildcardPassthrough(t *testing.T) {
	objs := []metav1.Object{
		ourGWClass(),
		service("app", "web", "http=8080>8080"), slice("app", "web-1", "web", "http", 8080, ready("10.0.0.1")),
		service("app", "exact", "http=8080>8080"), slice("app", "exact-1", "exact", "http", 8080, ready("10.0.0.2")),
		gateway("app", "pass", listener("tls", gatewayv1.TLSProtocolType, 443, certs(gatewayv1.TLSModePassthrough))),
	}
	wild := &gatewayv1.TLSRoute{ObjectMeta: meta("app", "wild")}
	wild.Spec.ParentRefs = []gatewayv1.ParentReference{parent("pass")}
	wild.Spec.Hostnames = []gatewayv1.Hostname{"*.com"}
	wild.Spec.Rules = []gatewayv1.TLSRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref("web", 8080, 1)}}}
	exact := &gatewayv1.TLSRoute{ObjectMeta: meta("app", "exact")}
	exact.Spec.ParentRefs = []gatewayv1.ParentReference{parent("pass")}
	exact.Spec.Hostnames = []gatewayv1.Hostname{"abc.example.com"}
	exact.Spec.Rules = []gatewayv1.TLSRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref("exact", 8080, 1)}}}
	objs = append(objs, wild, exact)
	opts := gwOpts
	opts.GatewayAddressPool = pool(t, "127.0.81.1")
	r := Translate(cacheOf(objs...), opts)
	fe := r.Table.Frontends[at("127.0.81.1", 443)]
	if fe == nil {
		t.Fatal("no frontend")
	}
	for sni, want := range map[string]string{
		"abc.example.com":   "app/exact:8080",
		"other.example.com": "app/web:8080",
		"x.com":             "app/web:8080",
		"non.matching.org":  "",
	} {
		got := fe.PassthroughFor(sni)
		if (got == nil) != (want == "") || (got != nil && got.Name != want) {
			t.Errorf("PassthroughFor(%q) = %v, want %q", sni, got, want)
		}
	}
}

// at is the frontend key of address a and port.
func at(a string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(a), port)
}
