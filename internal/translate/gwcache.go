package translate

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// gwObjects holds the Gateway API objects of a Cache (and the Namespaces
// whose labels allowedRoutes selectors read).
type gwObjects struct {
	classes     map[string]*gatewayv1.GatewayClass
	gateways    map[types.NamespacedName]*gatewayv1.Gateway
	listenerSet map[types.NamespacedName]*gatewayv1.ListenerSet
	http        map[types.NamespacedName]*gatewayv1.HTTPRoute
	grpc        map[types.NamespacedName]*gatewayv1.GRPCRoute
	tls         map[types.NamespacedName]*gatewayv1.TLSRoute
	tcp         map[types.NamespacedName]*gatewayv1.TCPRoute
	udp         map[types.NamespacedName]*gatewayv1.UDPRoute
	grants      map[types.NamespacedName]*gatewayv1.ReferenceGrant
	backendTLS  map[types.NamespacedName]*gatewayv1.BackendTLSPolicy
	namespaces  map[string]*corev1.Namespace
}

func newGWObjects() gwObjects {
	return gwObjects{
		classes:     map[string]*gatewayv1.GatewayClass{},
		gateways:    map[types.NamespacedName]*gatewayv1.Gateway{},
		listenerSet: map[types.NamespacedName]*gatewayv1.ListenerSet{},
		http:        map[types.NamespacedName]*gatewayv1.HTTPRoute{},
		grpc:        map[types.NamespacedName]*gatewayv1.GRPCRoute{},
		tls:         map[types.NamespacedName]*gatewayv1.TLSRoute{},
		tcp:         map[types.NamespacedName]*gatewayv1.TCPRoute{},
		udp:         map[types.NamespacedName]*gatewayv1.UDPRoute{},
		grants:      map[types.NamespacedName]*gatewayv1.ReferenceGrant{},
		backendTLS:  map[types.NamespacedName]*gatewayv1.BackendTLSPolicy{},
		namespaces:  map[string]*corev1.Namespace{},
	}
}

// insertGateway handles the Gateway API kinds and Namespaces for Insert;
// known is false for other kinds.
func (g *gwObjects) insert(obj metav1.Object) (changed, known bool) {
	k := key(obj)
	switch o := obj.(type) {
	case *gatewayv1.GatewayClass:
		return put(g.classes, o.Name, o), true
	case *gatewayv1.Gateway:
		return put(g.gateways, k, o), true
	case *gatewayv1.ListenerSet:
		return put(g.listenerSet, k, o), true
	case *gatewayv1.HTTPRoute:
		return put(g.http, k, o), true
	case *gatewayv1.GRPCRoute:
		return put(g.grpc, k, o), true
	case *gatewayv1.TLSRoute:
		return put(g.tls, k, o), true
	case *gatewayv1.TCPRoute:
		return put(g.tcp, k, o), true
	case *gatewayv1.UDPRoute:
		return put(g.udp, k, o), true
	case *gatewayv1.ReferenceGrant:
		return put(g.grants, k, o), true
	case *gatewayv1.BackendTLSPolicy:
		return put(g.backendTLS, k, o), true
	case *corev1.Namespace:
		return put(g.namespaces, o.Name, o), true
	}
	return false, false
}

func (g *gwObjects) remove(obj metav1.Object) (changed, known bool) {
	k := key(obj)
	switch obj.(type) {
	case *gatewayv1.GatewayClass:
		return deleteKey(g.classes, k.Name), true
	case *gatewayv1.Gateway:
		return deleteKey(g.gateways, k), true
	case *gatewayv1.ListenerSet:
		return deleteKey(g.listenerSet, k), true
	case *gatewayv1.HTTPRoute:
		return deleteKey(g.http, k), true
	case *gatewayv1.GRPCRoute:
		return deleteKey(g.grpc, k), true
	case *gatewayv1.TLSRoute:
		return deleteKey(g.tls, k), true
	case *gatewayv1.TCPRoute:
		return deleteKey(g.tcp, k), true
	case *gatewayv1.UDPRoute:
		return deleteKey(g.udp, k), true
	case *gatewayv1.ReferenceGrant:
		return deleteKey(g.grants, k), true
	case *gatewayv1.BackendTLSPolicy:
		return deleteKey(g.backendTLS, k), true
	case *corev1.Namespace:
		return deleteKey(g.namespaces, k.Name), true
	}
	return false, false
}

func (g *gwObjects) len() int {
	return len(g.classes) + len(g.gateways) + len(g.listenerSet) + len(g.http) + len(g.grpc) +
		len(g.tls) + len(g.tcp) + len(g.udp) + len(g.grants) + len(g.backendTLS) + len(g.namespaces)
}

func byKey[T metav1.Object](a, b T) int { return compareKeys(a, b) }

// GatewayClasses returns the cached GatewayClasses sorted by name.
func (c *Cache) GatewayClasses() []*gatewayv1.GatewayClass {
	return sortedValues(c.gw.classes, byKey[*gatewayv1.GatewayClass])
}

// Gateways returns the cached Gateways sorted by namespace/name.
func (c *Cache) Gateways() []*gatewayv1.Gateway {
	return sortedValues(c.gw.gateways, byKey[*gatewayv1.Gateway])
}

// ListenerSets returns the cached ListenerSets sorted by namespace/name.
func (c *Cache) ListenerSets() []*gatewayv1.ListenerSet {
	return sortedValues(c.gw.listenerSet, byKey[*gatewayv1.ListenerSet])
}

// HTTPRoutes returns the cached HTTPRoutes sorted by namespace/name.
func (c *Cache) HTTPRoutes() []*gatewayv1.HTTPRoute {
	return sortedValues(c.gw.http, byKey[*gatewayv1.HTTPRoute])
}

// GRPCRoutes returns the cached GRPCRoutes sorted by namespace/name.
func (c *Cache) GRPCRoutes() []*gatewayv1.GRPCRoute {
	return sortedValues(c.gw.grpc, byKey[*gatewayv1.GRPCRoute])
}

// TLSRoutes returns the cached TLSRoutes sorted by namespace/name.
func (c *Cache) TLSRoutes() []*gatewayv1.TLSRoute {
	return sortedValues(c.gw.tls, byKey[*gatewayv1.TLSRoute])
}

// TCPRoutes returns the cached TCPRoutes sorted by namespace/name.
func (c *Cache) TCPRoutes() []*gatewayv1.TCPRoute {
	return sortedValues(c.gw.tcp, byKey[*gatewayv1.TCPRoute])
}

// UDPRoutes returns the cached UDPRoutes sorted by namespace/name.
func (c *Cache) UDPRoutes() []*gatewayv1.UDPRoute {
	return sortedValues(c.gw.udp, byKey[*gatewayv1.UDPRoute])
}

// ReferenceGrants returns the cached ReferenceGrants sorted by
// namespace/name.
func (c *Cache) ReferenceGrants() []*gatewayv1.ReferenceGrant {
	return sortedValues(c.gw.grants, byKey[*gatewayv1.ReferenceGrant])
}

// BackendTLSPolicies returns the cached BackendTLSPolicies sorted by
// namespace/name.
func (c *Cache) BackendTLSPolicies() []*gatewayv1.BackendTLSPolicy {
	return sortedValues(c.gw.backendTLS, byKey[*gatewayv1.BackendTLSPolicy])
}

// LookupGateway returns the Gateway ns/name, or nil.
func (c *Cache) LookupGateway(ns, name string) *gatewayv1.Gateway {
	return c.gw.gateways[types.NamespacedName{Namespace: ns, Name: name}]
}

// LookupNamespace returns the Namespace name, or nil.
func (c *Cache) LookupNamespace(name string) *corev1.Namespace { return c.gw.namespaces[name] }

// GatewaySecretRefs returns the Secrets the HTTPS listeners of our
// Gateways (and of the ListenerSets attached to them) may use: those in the
// listener's own namespace and those a ReferenceGrant permits. A source
// that loads Secrets on demand fetches exactly these, so the private keys
// of Secrets a Gateway may not use never enter memory. opts supplies the
// GatewayControllerName.
func GatewaySecretRefs(c *Cache, opts Options) []types.NamespacedName {
	opts = opts.WithDefaults()
	ours := map[string]bool{}
	for _, gc := range c.gw.classes {
		if string(gc.Spec.ControllerName) == opts.GatewayControllerName {
			ours[gc.Name] = true
		}
	}
	s := &state{c: c, opts: opts}
	seen := map[types.NamespacedName]bool{}
	var out []types.NamespacedName
	add := func(kind, ns string, ls []gatewayv1.Listener) {
		for _, l := range ls {
			if l.TLS == nil {
				continue
			}
			for _, ref := range l.TLS.CertificateRefs {
				if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Secret") {
					continue
				}
				nn := types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
				if ref.Namespace != nil {
					nn.Namespace = string(*ref.Namespace)
				}
				if nn.Namespace != ns && !s.granted(fromRef{group: gatewayGroup, kind: kind, ns: ns}, toRef{kind: "Secret", ns: nn.Namespace, name: nn.Name}) {
					continue
				}
				if !seen[nn] {
					seen[nn] = true
					out = append(out, nn)
				}
			}
		}
	}
	for _, gw := range c.gw.gateways {
		if ours[string(gw.Spec.GatewayClassName)] {
			add("Gateway", gw.Namespace, gw.Spec.Listeners)
		}
	}
	for _, ls := range c.gw.listenerSet {
		ns := ls.Namespace
		if ls.Spec.ParentRef.Namespace != nil {
			ns = string(*ls.Spec.ParentRef.Namespace)
		}
		gw := c.gw.gateways[types.NamespacedName{Namespace: ns, Name: string(ls.Spec.ParentRef.Name)}]
		if gw == nil || !ours[string(gw.Spec.GatewayClassName)] {
			continue
		}
		entries := make([]gatewayv1.Listener, len(ls.Spec.Listeners))
		for i, e := range ls.Spec.Listeners {
			entries[i] = gatewayv1.Listener{TLS: e.TLS}
		}
		add("ListenerSet", ls.Namespace, entries)
	}
	return out
}

// BackendTLSConfigMapRefs returns the ConfigMaps BackendTLSPolicies name
// in caCertificateRefs (in the policy's namespace), for sources that load
// ConfigMaps on demand.
func BackendTLSConfigMapRefs(c *Cache) []types.NamespacedName {
	var out []types.NamespacedName
	for _, p := range c.gw.backendTLS {
		for _, ref := range p.Spec.Validation.CACertificateRefs {
			if ref.Group == "" && ref.Kind == "ConfigMap" {
				out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: string(ref.Name)})
			}
		}
	}
	return out
}
