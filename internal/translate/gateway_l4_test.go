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

func l4Ref(name string, port, weight int32) gatewayv1.BackendRef {
	return gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(port)}, Weight: ptr.To(weight)}
}

func TestGatewayL4AndGRPC(t *testing.T) {
	l4gw := gateway("app", "l4",
		listener("tls", gatewayv1.TLSProtocolType, 443, lhost("*.pass.example.com"), certs(gatewayv1.TLSModePassthrough)),
		listener("tcp", gatewayv1.TCPProtocolType, 9000),
		listener("udp", gatewayv1.UDPProtocolType, 5300),
		listener("tcp-clash", gatewayv1.TCPProtocolType, 7000),
	)
	l4cm := configMap("sys", "l4", map[string]string{"tcp.7000": "app/web:8080"})
	tlsRoute := &gatewayv1.TLSRoute{ObjectMeta: meta("app", "pass")}
	tlsRoute.Spec.ParentRefs = []gatewayv1.ParentReference{parent("l4#tls")}
	tlsRoute.Spec.Hostnames = []gatewayv1.Hostname{"db.pass.example.com", "other.example.org"}
	tlsRoute.Spec.Rules = []gatewayv1.TLSRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref("web", 8080, 1)}}}
	tcp := &gatewayv1.TCPRoute{ObjectMeta: meta("app", "tcp")}
	tcp.Spec.ParentRefs = []gatewayv1.ParentReference{parent("l4#tcp")}
	tcp.Spec.Rules = []gatewayv1.TCPRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref("web", 8080, 2), l4Ref("api", 9090, 1), l4Ref("missing", 1, 5)}}}
	udp := &gatewayv1.UDPRoute{ObjectMeta: meta("app", "udp")}
	udp.Spec.ParentRefs = []gatewayv1.ParentReference{parent("l4#udp")}
	udp.Spec.Rules = []gatewayv1.UDPRouteRule{{BackendRefs: []gatewayv1.BackendRef{l4Ref("api", 9090, 1)}}}
	grpc := &gatewayv1.GRPCRoute{ObjectMeta: meta("app", "grpc")}
	grpc.Spec.ParentRefs = []gatewayv1.ParentReference{parent("gw")}
	grpc.Spec.Hostnames = []gatewayv1.Hostname{"grpc.example.com"}
	grpc.Spec.Rules = []gatewayv1.GRPCRouteRule{{
		Matches: []gatewayv1.GRPCRouteMatch{
			{Method: &gatewayv1.GRPCMethodMatch{Service: ptr.To("echo.Echo"), Method: ptr.To("Say")}},
			{Method: &gatewayv1.GRPCMethodMatch{Method: ptr.To("Health")}, Headers: []gatewayv1.GRPCHeaderMatch{{Name: "x-v", Value: "1"}}},
		},
		BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: l4Ref("api", 9090, 1)}},
	}}

	objs := append(infra(t), l4gw, l4cm, tlsRoute, tcp, udp, grpc)
	c := NewCache("sys/l4")
	for _, o := range objs {
		c.Insert(o)
	}
	opts := gwOpts
	opts.L4ConfigMap = "sys/l4"
	r := Translate(c, opts)
	want := []string{
		`l4 TCP/7000 -> app/web:8080[10.0.0.1:8080] (sys/l4)`,
		`l4 TCP/9000 -> app/web:8080*2+app/api:9090*1[10.0.0.1:8080 10.0.0.1:8080 10.0.0.2:9090] (TCPRoute app/tcp)`,
		`l4 UDP/5300 -> app/api:9090[10.0.0.2:9090] (UDPRoute app/udp)`,
		`passthrough "db.pass.example.com" -> app/web:8080[10.0.0.1:8080]`,
		`vhost "grpc.example.com"`,
		`  plain =/echo.Echo/Say -> [app/api:9090[10.0.0.2:9090]/h2c*1] (GRPCRoute app/grpc)`,
		`  plain ~*^/[^/]+/Health$ h:X-V=1 -> [app/api:9090[10.0.0.2:9090]/h2c*1] (GRPCRoute app/grpc)`,
	}
	if got := gwDump(r.Table); !slices.Equal(got, want) {
		t.Errorf("table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	statusHas(t, r.Gateway,
		"TCPRoute app/tcp parent=l4#tcp Accepted=True/Accepted ResolvedRefs=False/BackendNotFound",
		"TLSRoute app/pass parent=l4#tls Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
		"UDPRoute app/udp parent=l4#udp Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
		"GRPCRoute app/grpc parent=gw Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
		"  listener tcp-clash attached=0 kinds=[TCPRoute] Accepted=False/PortUnavailable Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=False/Invalid",
		"  listener tls attached=1 kinds=[TLSRoute] Accepted=True/Accepted Conflicted=False/NoConflicts ResolvedRefs=True/ResolvedRefs Programmed=True/Programmed",
	)
}

func TestListenerSets(t *testing.T) {
	parentGW := gateway("app", "shared", listener("http", gatewayv1.HTTPProtocolType, 80, lhost("main.example.com")))
	parentGW.Spec.AllowedListeners = &gatewayv1.AllowedListeners{Namespaces: &gatewayv1.ListenerNamespaces{From: ptr.To(gatewayv1.NamespacesFromSame)}}
	closed := gateway("app", "closed", listener("http", gatewayv1.HTTPProtocolType, 80, lhost("closed.example.com")))
	set := func(ns, name, gw string, entries ...gatewayv1.ListenerEntry) *gatewayv1.ListenerSet {
		ls := &gatewayv1.ListenerSet{ObjectMeta: meta(ns, name)}
		ls.Generation = 1
		ls.Spec.ParentRef = gatewayv1.ParentGatewayReference{Name: gatewayv1.ObjectName(gw), Namespace: ptr.To(gatewayv1.Namespace("app"))}
		ls.Spec.Listeners = entries
		return ls
	}
	entry := func(name, host string) gatewayv1.ListenerEntry {
		return gatewayv1.ListenerEntry{Name: gatewayv1.SectionName(name), Port: 80, Protocol: gatewayv1.HTTPProtocolType, Hostname: ptr.To(gatewayv1.Hostname(host))}
	}
	route := httpRoute("app", "team-route", nil, nil, hrule(nil, nil, bref("web:8080", -1)))
	route.Spec.ParentRefs = []gatewayv1.ParentReference{{Kind: ptr.To(gatewayv1.Kind("ListenerSet")), Name: "team"}}
	objs := append(infra(t), parentGW, closed,
		set("app", "team", "shared", entry("team", "team.example.com"), entry("dup", "main.example.com")),
		set("app", "refused", "closed", entry("x", "x.example.com")),
		route)
	r := Translate(cacheOf(objs...), gwOpts)
	if vh := r.Table.HTTP.Hosts["team.example.com"]; vh == nil || len(vh.Routes) != 1 {
		t.Errorf("ListenerSet route not served; table:\n%s", strings.Join(gwDump(r.Table), "\n"))
	}
	team := r.Gateway.ListenerSets[key(objs[len(objs)-3])]
	refused := r.Gateway.ListenerSets[key(objs[len(objs)-2])]
	if c := team.Conditions[0]; c.Status != metav1.ConditionTrue || c.Reason != string(gatewayv1.ListenerSetReasonListenersNotValid) {
		t.Errorf("team Accepted = %+v", c)
	}
	if len(team.Listeners) != 2 || team.Listeners[0].AttachedRoutes != 1 || team.Listeners[1].Conditions[1].Reason != string(gatewayv1.ListenerReasonHostnameConflict) {
		t.Errorf("team listeners = %+v", team.Listeners)
	}
	if c := refused.Conditions[0]; c.Status != metav1.ConditionFalse || c.Reason != string(gatewayv1.ListenerSetReasonNotAllowed) {
		t.Errorf("refused Accepted = %+v", c)
	}
	gs := r.Gateway.Gateways[key(parentGW)]
	if gs.AttachedListenerSets == nil || *gs.AttachedListenerSets != 1 || len(gs.Listeners) != 1 || gs.Listeners[0].Conditions[1].Status != metav1.ConditionFalse {
		t.Errorf("parent Gateway status = %+v", gs)
	}
}

func btlsPolicy(name, svc string, caRefs ...string) *gatewayv1.BackendTLSPolicy {
	p := &gatewayv1.BackendTLSPolicy{ObjectMeta: meta("app", name)}
	p.Generation = 1
	p.Spec.TargetRefs = []gatewayv1.LocalPolicyTargetReferenceWithSectionName{{LocalPolicyTargetReference: gatewayv1.LocalPolicyTargetReference{Kind: "Service", Name: gatewayv1.ObjectName(svc)}}}
	p.Spec.Validation.Hostname = "web.internal"
	for _, r := range caRefs {
		p.Spec.Validation.CACertificateRefs = append(p.Spec.Validation.CACertificateRefs, gatewayv1.LocalObjectReference{Kind: "ConfigMap", Name: gatewayv1.ObjectName(r)})
	}
	return p
}

// TestBackendTLSPolicy: a valid policy makes its Service's backend speak
// verified TLS; a second one for the same Service is Conflicted; one whose
// CA is missing leaves its Service unused (no endpoints, never the clear);
// ancestors are the Gateways whose routes use the Services.
func TestBackendTLSPolicy(t *testing.T) {
	crt, _ := selfSigned(t, "web.internal")
	late := btlsPolicy("late", "web", "ca")
	late.CreationTimestamp = metav1.NewTime(epoch.Add(time.Minute))
	objs := append(infra(t),
		configMap("app", "ca", map[string]string{"ca.crt": string(crt)}),
		btlsPolicy("good", "web", "ca"), late, btlsPolicy("broken", "api", "missing"),
		httpRoute("app", "r", []string{"gw"}, []string{"tls.example.com"},
			hrule([]gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/api")}, nil, bref("api:9090", -1)),
			hrule(nil, nil, bref("web:8080", -1))))
	r := Translate(cacheOf(objs...), gwOpts)
	vh := r.Table.HTTP.Hosts["tls.example.com"]
	if vh == nil || len(vh.Routes) != 2 {
		t.Fatalf("table:\n%s", strings.Join(gwDump(r.Table), "\n"))
	}
	web, api := vh.Routes[1].Backends[0].Backend, vh.Routes[0].Backends[0].Backend
	if web.TLS == nil || web.TLS.ServerName != "web.internal" || web.TLS.RootCAs == nil || web.Protocol != routing.ProtocolHTTPS || web.TLS.Key == "" {
		t.Errorf("web backend = %+v", web)
	}
	if api == nil || len(api.Endpoints) != 0 || api.TLS != nil {
		t.Errorf("backend under an invalid policy = %+v", api)
	}
	got := map[string]string{}
	for nn, anc := range r.Gateway.BackendTLSPolicies {
		for _, a := range anc {
			got[nn.Name] += string(a.AncestorRef.Name) + ":" + a.Conditions[0].Reason + "/" + a.Conditions[1].Reason
		}
	}
	want := map[string]string{"good": "gw:Accepted/ResolvedRefs", "late": "gw:Conflicted/ResolvedRefs", "broken": "gw:NoValidCACertificate/InvalidCACertificateRef"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s ancestors = %q, want %q", k, got[k], v)
		}
	}
}
