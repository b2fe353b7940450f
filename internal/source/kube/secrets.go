package kube

import (
	"context"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/meshgate/meshgate/internal/translate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretTracker keeps exactly the referenced TLS Secrets in the build
// cache: those named in spec.tls of our Ingresses, plus the default
// certificate. It learns of changes from a metadata-only informer and reads
// a Secret's data through the uncached reader only when it is referenced
// and its resourceVersion moved. It is owned by the handler goroutine.
//
// The same tracker, with another newObj and refs, keeps the ConfigMaps
// holding BackendTLSPolicy CA bundles (newCATracker).
type secretTracker struct {
	reader client.Reader
	cache  *translate.Cache
	opts   translate.Options
	log    logr.Logger
	// newObj returns an empty object of the tracked kind; refs the keys
	// the cache's objects reference.
	newObj func() client.Object
	refs   func(*translate.Cache) map[types.NamespacedName]struct{}

	meta       map[types.NamespacedName]string   // resourceVersion seen by the metadata informer
	loaded     map[types.NamespacedName]string   // resourceVersion inserted into the cache
	referenced map[types.NamespacedName]struct{} // as of the last sync
	failed     map[types.NamespacedName]struct{} // fetches to retry

	// nLoaded mirrors len(loaded) for readers outside the owner goroutine
	// (tests, metrics).
	nLoaded atomic.Int64
}

func newSecretTracker(r client.Reader, c *translate.Cache, opts translate.Options, log logr.Logger) *secretTracker {
	return &secretTracker{
		reader: r, cache: c, opts: opts, log: log.WithName("secrets"),
		newObj:     func() client.Object { return &corev1.Secret{} },
		refs:       func(c *translate.Cache) map[types.NamespacedName]struct{} { return secretRefs(c, opts) },
		meta:       map[types.NamespacedName]string{},
		loaded:     map[types.NamespacedName]string{},
		referenced: map[types.NamespacedName]struct{}{},
		failed:     map[types.NamespacedName]struct{}{},
	}
}

// metaChanged records a Secret's new resourceVersion and, if it is
// referenced and not loaded at that version, fetches it. It reports
// whether the cache changed in a way that needs a rebuild.
func (s *secretTracker) metaChanged(ctx context.Context, obj client.Object) bool {
	k := metaKey(obj)
	s.meta[k] = obj.GetResourceVersion()
	if _, ok := s.referenced[k]; !ok || s.loaded[k] == obj.GetResourceVersion() {
		return false
	}
	return s.fetch(ctx, k)
}

// metaDeleted forgets a deleted Secret and drops it from the cache.
func (s *secretTracker) metaDeleted(obj client.Object) bool {
	k := metaKey(obj)
	delete(s.meta, k)
	delete(s.failed, k)
	return s.unload(k)
}

func (s *secretTracker) unload(k types.NamespacedName) bool {
	if _, ok := s.loaded[k]; !ok {
		return false
	}
	delete(s.loaded, k)
	s.nLoaded.Store(int64(len(s.loaded)))
	o := s.newObj()
	o.SetNamespace(k.Namespace)
	o.SetName(k.Name)
	return s.cache.Remove(o)
}

// fetch reads Secret k through the uncached reader and inserts it. A
// missing Secret is unloaded; other errors are retried later.
func (s *secretTracker) fetch(ctx context.Context, k types.NamespacedName) bool {
	ctx, cancel := context.WithTimeout(ctx, secretFetchTimeout)
	defer cancel()
	obj := s.newObj()
	err := s.reader.Get(ctx, k, obj)
	switch {
	case apierrors.IsNotFound(err):
		delete(s.failed, k)
		return s.unload(k)
	case err != nil:
		s.failed[k] = struct{}{}
		s.log.Error(err, "reading referenced object; will retry", "object", k.String())
		return false
	}
	delete(s.failed, k)
	s.loaded[k] = obj.GetResourceVersion()
	s.nLoaded.Store(int64(len(s.loaded)))
	return s.cache.Insert(obj)
}

// sync recomputes the referenced set, loads newly referenced objects and
// unloads the ones no longer used.
func (s *secretTracker) sync(ctx context.Context, c *translate.Cache) {
	ref := s.refs(c)
	for k := range s.referenced {
		if _, ok := ref[k]; !ok {
			s.unload(k)
			delete(s.failed, k)
		}
	}
	for k := range ref {
		rv, known := s.meta[k]
		if lrv, ok := s.loaded[k]; ok && known && lrv == rv {
			continue
		}
		if _, ok := s.loaded[k]; ok && !known {
			continue // loaded before the metadata informer caught up
		}
		s.fetch(ctx, k)
	}
	s.referenced = ref
}

func (s *secretTracker) hasFailed() bool { return len(s.failed) > 0 }

// retryFailed fetches the Secrets whose last fetch failed and reports
// whether the cache changed.
func (s *secretTracker) retryFailed(ctx context.Context) bool {
	changed := false
	for k := range s.failed {
		if _, ok := s.referenced[k]; !ok {
			delete(s.failed, k)
			continue
		}
		if s.fetch(ctx, k) {
			changed = true
		}
	}
	return changed
}

// secretRefs are the Secrets the Ingresses of our class (spec.tls), the
// HTTPS listeners of our Gateways and the default certificate name.
func secretRefs(c *translate.Cache, opts translate.Options) map[types.NamespacedName]struct{} {
	ref := map[types.NamespacedName]struct{}{}
	if opts.DefaultCertificate != "" {
		ref[mustNN(opts.DefaultCertificate)] = struct{}{}
	}
	for _, nn := range translate.GatewaySecretRefs(c, opts) {
		ref[nn] = struct{}{}
	}
	classes := c.IngressClasses()
	for _, ing := range c.Ingresses() {
		if !translate.IsOurs(ing, classes, opts) {
			continue
		}
		for _, t := range ing.Spec.TLS {
			if t.SecretName != "" {
				ref[types.NamespacedName{Namespace: ing.Namespace, Name: t.SecretName}] = struct{}{}
			}
		}
	}
	return ref
}

// newCATracker keeps the ConfigMaps BackendTLSPolicies name as CA bundles
// in the cache, except the L4 ConfigMap, which its own informer keeps.
func newCATracker(r client.Reader, c *translate.Cache, opts translate.Options, log logr.Logger) *secretTracker {
	t := newSecretTracker(r, c, opts, log)
	t.log = log.WithName("ca-configmaps")
	t.newObj = func() client.Object { return &corev1.ConfigMap{} }
	t.refs = func(c *translate.Cache) map[types.NamespacedName]struct{} {
		ref := map[types.NamespacedName]struct{}{}
		for _, nn := range translate.BackendTLSConfigMapRefs(c) {
			if nn.String() != opts.L4ConfigMap {
				ref[nn] = struct{}{}
			}
		}
		return ref
	}
	return t
}
