package translate

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/meshgate/meshgate/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Errors returned by the Cache lookups; test with errors.Is.
var (
	// ErrNotFound: no object of that kind and name is in the cache.
	ErrNotFound = errors.New("not found")
	// ErrInvalidSecret: the Secret exists but holds no usable TLS
	// certificate and key.
	ErrInvalidSecret = errors.New("invalid TLS secret")
)

// Cache holds the Kubernetes objects the builder reads. Insert and Remove
// tell the caller whether the change can affect the routing table, so an
// informer resync or an unrelated Secret does not trigger a rebuild.
//
// A Cache is not safe for concurrent use: one goroutine owns it (see
// internal/source/standalone) and calls ToTable with it. Objects handed to Insert
// belong to the cache afterwards and must not be modified; ToTable only reads
// them. The zero value is not usable; call NewCache.
type Cache struct {
	// L4ConfigMap is the "namespace/name" of the ConfigMap holding TCP/UDP
	// services. Only that ConfigMap triggers rebuilds; empty means every
	// ConfigMap does.
	L4ConfigMap string

	ingresses      map[types.NamespacedName]*networkingv1.Ingress
	ingressClasses map[string]*networkingv1.IngressClass
	services       map[types.NamespacedName]*corev1.Service
	slices         map[types.NamespacedName]*discoveryv1.EndpointSlice
	// slicesByService indexes slices by namespace and the
	// kubernetes.io/service-name label.
	slicesByService map[types.NamespacedName]map[string]*discoveryv1.EndpointSlice
	secrets         map[types.NamespacedName]*secretEntry
	configMaps      map[types.NamespacedName]*corev1.ConfigMap
	policies        map[types.NamespacedName]*v1alpha1.TLSPolicy
	gw              gwObjects
}

// secretEntry keeps a Secret with its certificate parsed once at Insert,
// so rebuilds do not parse keys again.
type secretEntry struct {
	secret *corev1.Secret
	cert   *tls.Certificate
	err    error
}

// NewCache returns an empty cache. l4ConfigMap is "namespace/name" of the
// L4 ConfigMap, or "" (see Cache.L4ConfigMap).
func NewCache(l4ConfigMap string) *Cache {
	return &Cache{
		L4ConfigMap:     l4ConfigMap,
		ingresses:       map[types.NamespacedName]*networkingv1.Ingress{},
		ingressClasses:  map[string]*networkingv1.IngressClass{},
		services:        map[types.NamespacedName]*corev1.Service{},
		slices:          map[types.NamespacedName]*discoveryv1.EndpointSlice{},
		slicesByService: map[types.NamespacedName]map[string]*discoveryv1.EndpointSlice{},
		secrets:         map[types.NamespacedName]*secretEntry{},
		configMaps:      map[types.NamespacedName]*corev1.ConfigMap{},
		policies:        map[types.NamespacedName]*v1alpha1.TLSPolicy{},
		gw:              newGWObjects(),
	}
}

// ServiceNameLabel is the EndpointSlice label naming its Service.
const ServiceNameLabel = discoveryv1.LabelServiceName

func key(o metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// unchanged reports whether old (which must be non-nil) has obj's
// non-empty resourceVersion (an informer resync).
func unchanged(old, obj metav1.Object) bool {
	return obj.GetResourceVersion() != "" && old.GetResourceVersion() == obj.GetResourceVersion()
}

// put stores v under k and reports whether it changed the map.
func put[K comparable, V metav1.Object](m map[K]V, k K, v V) bool {
	old, ok := m[k]
	m[k] = v
	return !ok || !unchanged(old, v)
}

// Insert adds or replaces obj and reports whether the routing table must be
// rebuilt. Supported kinds are *networkingv1.Ingress, *IngressClass,
// *corev1.Service, *discoveryv1.EndpointSlice, *corev1.Secret,
// *corev1.ConfigMap, *v1alpha1.TLSPolicy, *corev1.Namespace and the
// Gateway API kinds of sigs.k8s.io/gateway-api/apis/v1 (GatewayClass,
// Gateway, ListenerSet, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute,
// ReferenceGrant, BackendTLSPolicy); other objects are ignored
// (false). Re-inserting an object with the same resourceVersion is a no-op.
func (c *Cache) Insert(obj metav1.Object) bool {
	k := key(obj)
	switch o := obj.(type) {
	case *networkingv1.Ingress:
		return put(c.ingresses, k, o)
	case *networkingv1.IngressClass:
		return put(c.ingressClasses, o.Name, o)
	case *corev1.Service:
		return put(c.services, k, o)
	case *discoveryv1.EndpointSlice:
		return c.insertSlice(k, o)
	case *corev1.Secret:
		return c.insertSecret(k, o)
	case *corev1.ConfigMap:
		return put(c.configMaps, k, o) && c.isL4ConfigMap(k)
	case *v1alpha1.TLSPolicy:
		return put(c.policies, k, o)
	}
	changed, _ := c.gw.insert(obj)
	return changed
}

func (c *Cache) insertSlice(k types.NamespacedName, o *discoveryv1.EndpointSlice) bool {
	old := c.slices[k]
	if old != nil {
		c.unindexSlice(old)
	}
	changed := old == nil || !unchanged(old, o)
	c.slices[k] = o
	if svc := o.Labels[ServiceNameLabel]; svc != "" {
		sk := types.NamespacedName{Namespace: o.Namespace, Name: svc}
		m := c.slicesByService[sk]
		if m == nil {
			m = map[string]*discoveryv1.EndpointSlice{}
			c.slicesByService[sk] = m
		}
		m[o.Name] = o
	}
	return changed
}

func (c *Cache) unindexSlice(o *discoveryv1.EndpointSlice) {
	svc := o.Labels[ServiceNameLabel]
	if svc == "" {
		return
	}
	sk := types.NamespacedName{Namespace: o.Namespace, Name: svc}
	if m := c.slicesByService[sk]; m != nil {
		delete(m, o.Name)
		if len(m) == 0 {
			delete(c.slicesByService, sk)
		}
	}
}

func (c *Cache) insertSecret(k types.NamespacedName, o *corev1.Secret) bool {
	old := c.secrets[k]
	if old != nil && unchanged(old.secret, o) {
		old.secret = o
		return false
	}
	e := &secretEntry{secret: o}
	e.cert, e.err = parseTLSSecret(o)
	c.secrets[k] = e
	// A Secret matters if it is (or was) a TLS secret.
	return isTLSSecret(o) || (old != nil && isTLSSecret(old.secret))
}

func (c *Cache) isL4ConfigMap(k types.NamespacedName) bool {
	return c.L4ConfigMap == "" || c.L4ConfigMap == k.String()
}

// Remove deletes obj (matched by kind, namespace and name) and reports
// whether the routing table must be rebuilt.
func (c *Cache) Remove(obj metav1.Object) bool {
	k := key(obj)
	switch obj.(type) {
	case *networkingv1.Ingress:
		return deleteKey(c.ingresses, k)
	case *networkingv1.IngressClass:
		return deleteKey(c.ingressClasses, k.Name)
	case *corev1.Service:
		return deleteKey(c.services, k)
	case *discoveryv1.EndpointSlice:
		old := c.slices[k]
		if old == nil {
			return false
		}
		c.unindexSlice(old)
		delete(c.slices, k)
		return true
	case *corev1.Secret:
		old := c.secrets[k]
		if old == nil {
			return false
		}
		delete(c.secrets, k)
		return isTLSSecret(old.secret)
	case *corev1.ConfigMap:
		return deleteKey(c.configMaps, k) && c.isL4ConfigMap(k)
	case *v1alpha1.TLSPolicy:
		return deleteKey(c.policies, k)
	}
	changed, _ := c.gw.remove(obj)
	return changed
}

func deleteKey[K comparable, V any](m map[K]V, k K) bool {
	if _, ok := m[k]; !ok {
		return false
	}
	delete(m, k)
	return true
}

// Len returns the number of objects in the cache.
func (c *Cache) Len() int {
	return len(c.ingresses) + len(c.ingressClasses) + len(c.services) + len(c.slices) +
		len(c.secrets) + len(c.configMaps) + len(c.policies) + c.gw.len()
}

// LookupService returns the Service ns/name or an error wrapping ErrNotFound.
func (c *Cache) LookupService(ns, name string) (*corev1.Service, error) {
	if s := c.services[types.NamespacedName{Namespace: ns, Name: name}]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("service %s/%s: %w", ns, name, ErrNotFound)
}

// LookupTLSSecret returns the parsed certificate (Leaf set) of the
// kubernetes.io/tls Secret ns/name. The error wraps ErrNotFound or
// ErrInvalidSecret. The certificate is shared: do not modify it.
func (c *Cache) LookupTLSSecret(ns, name string) (*tls.Certificate, error) {
	e := c.secrets[types.NamespacedName{Namespace: ns, Name: name}]
	if e == nil {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, ErrNotFound)
	}
	if e.err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, e.err)
	}
	return e.cert, nil
}

// LookupTLSPolicy returns the TLSPolicy ns/name or an error wrapping
// ErrNotFound.
func (c *Cache) LookupTLSPolicy(ns, name string) (*v1alpha1.TLSPolicy, error) {
	if p := c.policies[types.NamespacedName{Namespace: ns, Name: name}]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("tlspolicy %s/%s: %w", ns, name, ErrNotFound)
}

// LookupConfigMap returns the ConfigMap ns/name or an error wrapping
// ErrNotFound.
func (c *Cache) LookupConfigMap(ns, name string) (*corev1.ConfigMap, error) {
	if m := c.configMaps[types.NamespacedName{Namespace: ns, Name: name}]; m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, ErrNotFound)
}

// EndpointSlicesFor returns the EndpointSlices of Service ns/name, in no
// particular order. The map must not be modified.
func (c *Cache) EndpointSlicesFor(ns, name string) map[string]*discoveryv1.EndpointSlice {
	return c.slicesByService[types.NamespacedName{Namespace: ns, Name: name}]
}

// IngressClasses returns the cached IngressClasses sorted by name.
func (c *Cache) IngressClasses() []*networkingv1.IngressClass {
	return sortedValues(c.ingressClasses, func(a, b *networkingv1.IngressClass) int {
		return compareStrings(a.Name, b.Name)
	})
}

// Ingresses returns every cached Ingress sorted by namespace/name.
func (c *Cache) Ingresses() []*networkingv1.Ingress {
	return sortedValues(c.ingresses, func(a, b *networkingv1.Ingress) int {
		return compareKeys(a, b)
	})
}

// TLSPolicies returns every cached TLSPolicy sorted by namespace/name.
func (c *Cache) TLSPolicies() []*v1alpha1.TLSPolicy {
	return sortedValues(c.policies, func(a, b *v1alpha1.TLSPolicy) int {
		return compareKeys(a, b)
	})
}
