package translate

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Fixture constructors for Gateway API objects.

func gwClass(name, controller string) *gatewayv1.GatewayClass {
	return &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: gatewayv1.GatewayController(controller)}}
}

func ourGWClass() *gatewayv1.GatewayClass { return gwClass("meshgate", DefaultGatewayControllerName) }

type listenerOpt func(*gatewayv1.Listener)

func listener(name string, proto gatewayv1.ProtocolType, port int32, opts ...listenerOpt) gatewayv1.Listener {
	l := gatewayv1.Listener{Name: gatewayv1.SectionName(name), Protocol: proto, Port: port}
	for _, o := range opts {
		o(&l)
	}
	return l
}

func lhost(h string) listenerOpt {
	return func(l *gatewayv1.Listener) { l.Hostname = ptr.To(gatewayv1.Hostname(h)) }
}

func fromNS(from gatewayv1.FromNamespaces, sel map[string]string) listenerOpt {
	return func(l *gatewayv1.Listener) {
		if l.AllowedRoutes == nil {
			l.AllowedRoutes = &gatewayv1.AllowedRoutes{}
		}
		l.AllowedRoutes.Namespaces = &gatewayv1.RouteNamespaces{From: ptr.To(from)}
		if sel != nil {
			l.AllowedRoutes.Namespaces.Selector = &metav1.LabelSelector{MatchLabels: sel}
		}
	}
}

func kinds(ks ...string) listenerOpt {
	return func(l *gatewayv1.Listener) {
		if l.AllowedRoutes == nil {
			l.AllowedRoutes = &gatewayv1.AllowedRoutes{}
		}
		for _, k := range ks {
			l.AllowedRoutes.Kinds = append(l.AllowedRoutes.Kinds, gatewayv1.RouteGroupKind{Kind: gatewayv1.Kind(k)})
		}
	}
}

// certs sets tls.certificateRefs; "ns/name" names another namespace.
func certs(mode gatewayv1.TLSModeType, refs ...string) listenerOpt {
	return func(l *gatewayv1.Listener) {
		l.TLS = &gatewayv1.ListenerTLSConfig{Mode: ptr.To(mode)}
		for _, r := range refs {
			ref := gatewayv1.SecretObjectReference{Name: gatewayv1.ObjectName(r)}
			if ns, name, ok := strings.Cut(r, "/"); ok {
				ref.Namespace, ref.Name = ptr.To(gatewayv1.Namespace(ns)), gatewayv1.ObjectName(name)
			}
			l.TLS.CertificateRefs = append(l.TLS.CertificateRefs, ref)
		}
	}
}

func gateway(ns, name string, ls ...gatewayv1.Listener) *gatewayv1.Gateway {
	gw := &gatewayv1.Gateway{ObjectMeta: meta(ns, name), Spec: gatewayv1.GatewaySpec{GatewayClassName: "meshgate", Listeners: ls}}
	gw.Generation = 1
	return gw
}

// parent is a parentRef "gw" or "ns/gw", optionally "gw#section".
func parent(ref string) gatewayv1.ParentReference {
	p := gatewayv1.ParentReference{}
	ref, section, ok := strings.Cut(ref, "#")
	if ok {
		p.SectionName = ptr.To(gatewayv1.SectionName(section))
	}
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		p.Namespace, ref = ptr.To(gatewayv1.Namespace(ns)), name
	}
	p.Name = gatewayv1.ObjectName(ref)
	return p
}

// bref is a backendRef "svc:port" or "ns/svc:port", with weight w (<0: unset).
func bref(ref string, w int32) gatewayv1.HTTPBackendRef {
	name, port, _ := strings.Cut(ref, ":")
	var p int32
	fmt.Sscan(port, &p)
	b := gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
		Name: gatewayv1.ObjectName(name), Port: ptr.To(p)}}}
	if ns, n, ok := strings.Cut(name, "/"); ok {
		b.Namespace, b.Name = ptr.To(gatewayv1.Namespace(ns)), gatewayv1.ObjectName(n)
	}
	if w >= 0 {
		b.Weight = ptr.To(w)
	}
	return b
}

type routeOpt func(*gatewayv1.HTTPRoute)

func httpRoute(ns, name string, parents []string, hosts []string, opts ...routeOpt) *gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{ObjectMeta: meta(ns, name)}
	r.Generation = 1
	for _, p := range parents {
		r.Spec.ParentRefs = append(r.Spec.ParentRefs, parent(p))
	}
	for _, h := range hosts {
		r.Spec.Hostnames = append(r.Spec.Hostnames, gatewayv1.Hostname(h))
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func hrule(matches []gatewayv1.HTTPRouteMatch, filters []gatewayv1.HTTPRouteFilter, backends ...gatewayv1.HTTPBackendRef) routeOpt {
	return func(r *gatewayv1.HTTPRoute) {
		r.Spec.Rules = append(r.Spec.Rules, gatewayv1.HTTPRouteRule{Matches: matches, Filters: filters, BackendRefs: backends})
	}
}

func pathMatch(t gatewayv1.PathMatchType, v string) gatewayv1.HTTPRouteMatch {
	return gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(t), Value: ptr.To(v)}}
}

func routeAge(minutes int) routeOpt {
	return func(r *gatewayv1.HTTPRoute) { r.CreationTimestamp = metav1.NewTime(epoch.Add(timeMinutes(minutes))) }
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func grant(ns, fromKind, fromNS, toKind string) *gatewayv1.ReferenceGrant {
	fromGroup := gatewayv1.Group(gatewayGroup)
	return &gatewayv1.ReferenceGrant{ObjectMeta: meta(ns, "grant-"+strings.ToLower(fromKind)+"-"+fromNS), Spec: gatewayv1.ReferenceGrantSpec{
		From: []gatewayv1.ReferenceGrantFrom{{Group: fromGroup, Kind: gatewayv1.Kind(fromKind), Namespace: gatewayv1.Namespace(fromNS)}},
		To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: gatewayv1.Kind(toKind)}},
	}}
}

// gwDump renders the HTTP routes of a table with their Gateway API
// features, one line per route under its vhost, blocks sorted.
func gwDump(t *routing.Table) []string {
	var out []string
	be := func(b *routing.Backend) string {
		if b == nil {
			return "<500>"
		}
		s := b.Name + fmt.Sprint(b.Endpoints)
		if b.Protocol != "" {
			s += "/" + string(b.Protocol)
		}
		return s
	}
	vh := func(name string, v *routing.VirtualHost) {
		out = append(out, fmt.Sprintf("vhost %q", name))
		for _, r := range v.Routes {
			kind := map[routing.PathType]string{routing.PathExact: "=", routing.PathPrefix: "^", routing.PathImplementationSpecific: "~", routing.PathRegex: "~*"}[r.PathType]
			line := fmt.Sprintf("  %s %s%s", []string{"all", "plain", "tls"}[r.Scope], kind, r.Path)
			if r.Method != "" {
				line += " method=" + r.Method
			}
			for _, h := range r.Headers {
				line += fmt.Sprintf(" h:%s=%s", h.Name, h.Value)
			}
			for _, q := range r.Query {
				line += fmt.Sprintf(" q:%s=%s", q.Name, q.Value)
			}
			if r.Backend != nil {
				line += " -> " + be(r.Backend)
			} else if r.Backends != nil {
				var bs []string
				for _, wb := range r.Backends {
					bs = append(bs, fmt.Sprintf("%s*%d", be(wb.Backend), wb.Weight))
				}
				line += " -> [" + strings.Join(bs, " ") + "]"
			}
			line += filterString(r.Filters)
			if r.Timeouts != (routing.Timeouts{}) {
				line += fmt.Sprintf(" timeouts=%v/%v", r.Timeouts.Request, r.Timeouts.BackendRequest)
			}
			out = append(out, line+" ("+r.Source+")")
		}
	}
	for k, v := range t.HTTP.Hosts {
		vh(k, v)
	}
	for k, v := range t.HTTP.Wildcards {
		name := "*." + k
		if t.HTTP.Suffixes[k] == v {
			name += " deep"
		}
		vh(name, v)
	}
	if t.HTTP.CatchAll != nil {
		vh("", t.HTTP.CatchAll)
	}
	for k, h := range t.TLS.Exact {
		out = append(out, fmt.Sprintf("tls %q cert=%s", k, h.Certificate.Leaf.Subject.CommonName))
	}
	if t.TLS.Default != nil {
		out = append(out, fmt.Sprintf("tls <default> cert=%s", t.TLS.Default.Certificate.Leaf.Subject.CommonName))
	}
	for k, b := range t.Passthrough {
		out = append(out, fmt.Sprintf("passthrough %q -> %s", k, be(b)))
	}
	for _, l := range t.L4 {
		out = append(out, fmt.Sprintf("l4 %s/%d -> %s (%s)", l.Protocol, l.Port, be(l.Backend), l.Source))
	}
	return sortBlocks(out)
}

func filterString(f *routing.Filters) string {
	if f == nil {
		return ""
	}
	s := ""
	if m := f.RequestHeaders; m != nil {
		s += fmt.Sprintf(" reqhdr(set=%v add=%v rm=%v)", m.Set, m.Add, m.Remove)
	}
	if m := f.ResponseHeaders; m != nil {
		s += fmt.Sprintf(" resphdr(set=%v add=%v rm=%v)", m.Set, m.Add, m.Remove)
	}
	if r := f.Redirect; r != nil {
		s += fmt.Sprintf(" redirect(%s %s %v %d lp=%d %d)", r.Scheme, r.Hostname, r.Path, r.Port, r.ListenerPort, r.StatusCode)
	}
	if r := f.Rewrite; r != nil {
		s += fmt.Sprintf(" rewrite(%s %v)", r.Hostname, r.Path)
	}
	for _, m := range f.Mirrors {
		s += fmt.Sprintf(" mirror(%s %d)", m.Backend.Name, m.PerMillion)
	}
	return s
}

// statusDump renders Gateway API status as sorted lines.
func statusDump(st *GatewayStatuses) []string {
	var out []string
	conds := func(cs []metav1.Condition) string {
		var parts []string
		for _, c := range cs {
			parts = append(parts, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
		}
		return strings.Join(parts, " ")
	}
	for name, c := range st.Classes {
		out = append(out, fmt.Sprintf("class %s %s", name, conds(c.Conditions)))
	}
	for nn, g := range st.Gateways {
		out = append(out, fmt.Sprintf("gateway %s %s addrs=%d", nn, conds(g.Conditions), len(g.Addresses)))
		for _, l := range g.Listeners {
			var ks []string
			for _, k := range l.SupportedKinds {
				ks = append(ks, string(k.Kind))
			}
			out = append(out, fmt.Sprintf("  listener %s attached=%d kinds=%v %s", l.Name, l.AttachedRoutes, ks, conds(l.Conditions)))
		}
	}
	for rk, ps := range st.Routes {
		for _, p := range ps {
			sec := ""
			if p.ParentRef.SectionName != nil {
				sec = "#" + string(*p.ParentRef.SectionName)
			}
			out = append(out, fmt.Sprintf("%s %s parent=%s%s %s", rk.Kind, rk.NamespacedName, p.ParentRef.Name, sec, conds(p.Conditions)))
		}
	}
	return sortBlocks(out)
}

func timeMinutes(m int) time.Duration { return time.Duration(m) * time.Minute }
