package translate

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func meta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch)}
}

type ingOpt func(*networkingv1.Ingress)

func ingress(ns, name string, opts ...ingOpt) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: meta(ns, name)}
	ing.Spec.IngressClassName = ptr.To("meshgate")
	for _, o := range opts {
		o(ing)
	}
	return ing
}

func age(minutes int) ingOpt {
	return func(i *networkingv1.Ingress) {
		i.CreationTimestamp = metav1.NewTime(epoch.Add(time.Duration(minutes) * time.Minute))
	}
}

func annotate(k, v string) ingOpt {
	return func(i *networkingv1.Ingress) {
		if i.Annotations == nil {
			i.Annotations = map[string]string{}
		}
		i.Annotations[k] = v
	}
}

func label(k, v string) ingOpt {
	return func(i *networkingv1.Ingress) {
		if i.Labels == nil {
			i.Labels = map[string]string{}
		}
		i.Labels[k] = v
	}
}

func className(c *string) ingOpt {
	return func(i *networkingv1.Ingress) { i.Spec.IngressClassName = c }
}

func svcBackend(svc string, port any) networkingv1.IngressBackend {
	b := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc}}
	switch p := port.(type) {
	case int:
		b.Service.Port.Number = int32(p)
	case string:
		b.Service.Port.Name = p
	}
	return b
}

type pathSpec struct {
	typ  *networkingv1.PathType
	path string
	svc  string
	port any
}

var (
	prefixT = ptr.To(networkingv1.PathTypePrefix)
	exactT  = ptr.To(networkingv1.PathTypeExact)
	implT   = ptr.To(networkingv1.PathTypeImplementationSpecific)
)

func rule(host string, paths ...pathSpec) ingOpt {
	return func(i *networkingv1.Ingress) {
		r := networkingv1.IngressRule{Host: host}
		if len(paths) > 0 {
			r.HTTP = &networkingv1.HTTPIngressRuleValue{}
		}
		for _, p := range paths {
			r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{PathType: p.typ, Path: p.path, Backend: svcBackend(p.svc, p.port)})
		}
		i.Spec.Rules = append(i.Spec.Rules, r)
	}
}

func defaultBackend(svc string, port any) ingOpt {
	return func(i *networkingv1.Ingress) { b := svcBackend(svc, port); i.Spec.DefaultBackend = &b }
}

func tlsFor(secret string, hosts ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		i.Spec.TLS = append(i.Spec.TLS, networkingv1.IngressTLS{Hosts: hosts, SecretName: secret})
	}
}

func ourClass(isDefault bool) *networkingv1.IngressClass {
	c := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "meshgate"}}
	c.Spec.Controller = DefaultControllerName
	if isDefault {
		c.Annotations = map[string]string{DefaultClassAnnotation: "true"}
	}
	return c
}

// service has one port per "name=port>target" spec, e.g. "http=80>8080".
func service(ns, name string, ports ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: meta(ns, name)}
	for _, p := range ports {
		var pname string
		var port, target int
		if _, err := fmt.Sscanf(strings.NewReplacer("=", " ", ">", " ").Replace(p), "%s %d %d", &pname, &port, &target); err != nil {
			if _, err := fmt.Sscanf(strings.NewReplacer(">", " ").Replace(p), "%d %d", &port, &target); err != nil {
				panic(p)
			}
			pname = ""
		}
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: pname, Port: int32(port), TargetPort: intstr.FromInt32(int32(target))})
	}
	return s
}

type epSpec struct {
	addr  string
	ready *bool
}

func slice(ns, name, svc, portName string, port int, eps ...epSpec) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{ObjectMeta: meta(ns, name), AddressType: discoveryv1.AddressTypeIPv4}
	es.Labels = map[string]string{ServiceNameLabel: svc}
	var pn *string
	if portName != "" {
		pn = ptr.To(portName)
	}
	es.Ports = []discoveryv1.EndpointPort{{Name: pn, Port: ptr.To(int32(port))}}
	for _, e := range eps {
		if strings.Contains(e.addr, ":") {
			es.AddressType = discoveryv1.AddressTypeIPv6
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}})
	}
	return es
}

func ready(addr string) epSpec { return epSpec{addr: addr} }

func policy(ns, name string, spec v1alpha1.TLSPolicySpec) *v1alpha1.TLSPolicy {
	return &v1alpha1.TLSPolicy{ObjectMeta: meta(ns, name), Spec: spec}
}

var (
	certMu    = make(chan struct{}, 1)
	certCache = map[string][2][]byte{}
)

// selfSigned returns PEM cert and key for cn (cached per test binary).
func selfSigned(t testing.TB, cn string) (crt, key []byte) {
	certMu <- struct{}{}
	defer func() { <-certMu }()
	if c, ok := certCache[cn]; ok {
		return c[0], c[1]
	}
	c := testkit.NewCert(t, testkit.Spec{Names: []string{cn}, Serial: 1,
		NotBefore: epoch.Add(-time.Hour), NotAfter: epoch.Add(24 * 365 * 10 * time.Hour)})
	certCache[cn] = [2][]byte{c.CertPEM, c.KeyPEM}
	return c.CertPEM, c.KeyPEM
}

func tlsSecret(t testing.TB, ns, name, cn string) *corev1.Secret {
	crt, key := selfSigned(t, cn)
	return &corev1.Secret{ObjectMeta: meta(ns, name), Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
}

func configMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: meta(ns, name), Data: data}
}

func cacheOf(objs ...metav1.Object) *Cache {
	c := NewCache("")
	for _, o := range objs {
		c.Insert(o)
	}
	return c
}

// dump renders a table as sorted lines that tests compare.
func dump(t *routing.Table) []string {
	var out []string
	be := func(b *routing.Backend) string {
		if b == nil {
			return "<nil>"
		}
		s := b.Name + " " + fmt.Sprint(b.Endpoints)
		if b.Protocol != "" {
			s += " proto=" + string(b.Protocol)
		}
		if b.ConnectTimeout != 0 || b.ResponseTimeout != 0 {
			s += fmt.Sprintf(" timeouts=%v/%v", b.ConnectTimeout, b.ResponseTimeout)
		}
		if b.MaxBodyBytes != 0 {
			s += fmt.Sprintf(" body=%d", b.MaxBodyBytes)
		}
		if b.ProxyProtocol != 0 {
			s += fmt.Sprintf(" proxy=v%d", b.ProxyProtocol)
		}
		if a := b.Affinity; a != nil {
			s += fmt.Sprintf(" affinity=%s/%v/%s/%s/%v", a.Name, a.MaxAge, a.Path, a.SameSite, a.Secure)
		}
		if l := b.Learn; l != nil {
			s += fmt.Sprintf(" learn=%s/%v", l.Cookie, l.Timeout)
		}
		return s
	}
	vh := func(key string, v *routing.VirtualHost) {
		flags := ""
		if v.TLS {
			flags += " tls"
		}
		if v.SSLRedirect {
			flags += " redirect"
		}
		out = append(out, fmt.Sprintf("vhost %q%s", key, flags))
		for _, r := range v.Routes {
			kind := map[routing.PathType]string{routing.PathExact: "=", routing.PathPrefix: "^", routing.PathImplementationSpecific: "~"}[r.PathType]
			lim := ""
			if l := r.Limit; l != nil {
				lim = fmt.Sprintf(" limit=%s:rps=%d,rpm=%d,burst=%d,conns=%d,key=%q,allow=%v", l.Name, l.RPS, l.RPM, l.BurstMultiplier, l.Connections, l.Header, l.Allow)
			}
			out = append(out, fmt.Sprintf("  %s%s -> %s (%s)%s", kind, r.Path, be(r.Backend), r.Source, lim))
		}
	}
	for k, v := range t.HTTP.Hosts {
		vh(k, v)
	}
	for k, v := range t.HTTP.Wildcards {
		vh("*."+k, v)
	}
	if t.HTTP.CatchAll != nil {
		vh("", t.HTTP.CatchAll)
	}
	if t.HTTP.DefaultBackend != nil {
		out = append(out, "default -> "+be(t.HTTP.DefaultBackend))
	}
	th := func(k string, h *routing.TLSHost) {
		out = append(out, fmt.Sprintf("tls %q cert=%s policy=%q", k, h.Certificate.Leaf.Subject.CommonName, h.Policy.Name))
	}
	for k, h := range t.TLS.Exact {
		th(k, h)
	}
	for k, h := range t.TLS.Wildcards {
		th("*."+k, h)
	}
	if t.TLS.Default != nil {
		th("<default>", t.TLS.Default)
	}
	for k, b := range t.Passthrough {
		out = append(out, fmt.Sprintf("passthrough %q -> %s", k, be(b)))
	}
	for _, l := range t.L4 {
		out = append(out, fmt.Sprintf("l4 %s/%d -> %s (%s)", l.Protocol, l.Port, be(l.Backend), l.Source))
	}
	// Sort blocks by their header but keep route order inside a vhost.
	return sortBlocks(out)
}

func sortBlocks(lines []string) []string {
	var blocks [][]string
	for _, l := range lines {
		if strings.HasPrefix(l, "  ") {
			blocks[len(blocks)-1] = append(blocks[len(blocks)-1], l)
		} else {
			blocks = append(blocks, []string{l})
		}
	}
	slices.SortFunc(blocks, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	var out []string
	for _, b := range blocks {
		out = append(out, b...)
	}
	return out
}

func problemStrings(ps []Problem) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

type tlsPolicy = routing.TLSPolicy

func contains(s, sub string) bool { return strings.Contains(s, sub) }
