package kube

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Controller is meshgate's Kubernetes control plane for one replica. Create
// it with New, then call Start once. Peers and MeshCA may be called from
// any goroutine, before or after Start.
type Controller struct {
	opts    Options
	mgr     manager.Manager
	handler *handler
	status  *statusWriter
	peers   *peerStream
	meshID  atomic.Pointer[pki.Identity] // set by MeshIdentity, reloaded by meshCAWatcher
}

// Scheme returns a scheme with the built-in kinds and meshgate.io/v1alpha1.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("kube: add client-go scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("kube: add meshgate scheme: %w", err)
	}
	if err := gatewayv1.Install(s); err != nil {
		return nil, fmt.Errorf("kube: add Gateway API scheme: %w", err)
	}
	return s, nil
}

// configMapMetaObject is the metadata-only form in which ConfigMaps are
// watched for BackendTLSPolicy CA bundles (loaded on demand, like Secrets).
func configMapMetaObject() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	return m
}

// secretMetaObject is the metadata-only form in which Secrets are watched.
func secretMetaObject() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// New creates the controller-runtime Manager and wires the owner goroutine,
// the leader-only status writer and the mesh CA bootstrapper. It does not
// contact the API server beyond discovery.
func New(cfg *rest.Config, opts Options) (*Controller, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	mopts := manager.Options{
		Scheme:                        scheme,
		Logger:                        opts.Logger,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                opts.LeaderElect,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOptions(opts),
	}
	if opts.LeaseDuration > 0 {
		mopts.LeaseDuration = &opts.LeaseDuration
	}
	if opts.RenewDeadline > 0 {
		mopts.RenewDeadline = &opts.RenewDeadline
	}
	if opts.RetryPeriod > 0 {
		mopts.RetryPeriod = &opts.RetryPeriod
	}
	mgr, err := manager.New(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("kube: new manager: %w", err)
	}
	c := &Controller{opts: opts, mgr: mgr, peers: newPeerStream()}
	c.status = newStatusWriter(opts, mgr.GetClient(), mgr.GetEventRecorder("meshgate"))
	c.handler = newHandler(opts, mgr.GetCache(), mgr.GetAPIReader(), mgr.GetRESTMapper(), c.status, c.peers)
	if err := mgr.Add(c.handler); err != nil {
		return nil, fmt.Errorf("kube: add handler: %w", err)
	}
	if err := mgr.Add(c.status); err != nil {
		return nil, fmt.Errorf("kube: add status writer: %w", err)
	}
	if opts.MeshCASecret != "" {
		ens := &caEnsurer{c: mgr.GetAPIReader(), w: mgr.GetClient(), nn: mustNN(opts.MeshCASecret), log: opts.Logger}
		if err := mgr.Add(ens); err != nil {
			return nil, fmt.Errorf("kube: add mesh CA: %w", err)
		}
		if err := mgr.Add(&meshCAWatcher{c: c}); err != nil {
			return nil, fmt.Errorf("kube: add mesh CA watcher: %w", err)
		}
	}
	return c, nil
}

// cacheOptions restricts what the informers hold: the L4 ConfigMap only,
// Secrets as metadata of kubernetes.io/tls Secrets only, managed fields
// stripped everywhere.
func cacheOptions(opts Options) cache.Options {
	co := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			secretMetaObject(): {Field: fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS))},
		},
	}
	if opts.Namespace != "" {
		co.DefaultNamespaces = map[string]cache.Config{opts.Namespace: {}}
	}
	if opts.Build.L4ConfigMap != "" {
		nn := mustNN(opts.Build.L4ConfigMap)
		co.ByObject[&corev1.ConfigMap{}] = cache.ByObject{
			Namespaces: map[string]cache.Config{nn.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", nn.Name),
		}
	}
	return co
}

// watchedKinds lists the typed objects the owner goroutine is fed with.
func watchedKinds(opts Options) []client.Object {
	objs := []client.Object{
		&networkingv1.IngressClass{}, &networkingv1.Ingress{}, &corev1.Service{},
		&discoveryv1.EndpointSlice{}, &v1alpha1.TLSPolicy{},
	}
	if opts.Build.L4ConfigMap != "" {
		objs = append(objs, &corev1.ConfigMap{})
	}
	return objs
}

// gatewayKinds are the Gateway API kinds meshgate reads, watched only when
// the cluster serves their CRDs (see handler.register), plus the Namespaces
// whose labels allowedRoutes selectors match.
func gatewayKinds() []client.Object {
	return []client.Object{
		&gatewayv1.GatewayClass{}, &gatewayv1.Gateway{}, &gatewayv1.ListenerSet{},
		&gatewayv1.HTTPRoute{}, &gatewayv1.GRPCRoute{}, &gatewayv1.TLSRoute{},
		&gatewayv1.TCPRoute{}, &gatewayv1.UDPRoute{}, &gatewayv1.ReferenceGrant{},
		&gatewayv1.BackendTLSPolicy{},
	}
}

// Start runs the manager until ctx is done or leadership is lost (when
// leader election is on, losing the Lease ends Start with an error so the
// process restarts clean). It may be called once.
func (c *Controller) Start(ctx context.Context) error {
	if err := c.mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("kube: manager: %w", err)
	}
	return nil
}

// Elected is closed when this replica becomes the leader (at once without
// leader election).
func (c *Controller) Elected() <-chan struct{} { return c.mgr.Elected() }

// Synced is closed once every informer has delivered its initial list and
// the first table has been published.
func (c *Controller) Synced() <-chan struct{} { return c.handler.synced }

// Peers returns the stream of full mesh peer sets ("ip:port", sorted),
// discovered from the EndpointSlices of Options.MeshService. The channel
// holds at most one set: a slow reader skips intermediate sets and always
// receives the newest. It is never closed. Nil sets are never sent; an
// empty set means no peer is ready.
func (c *Controller) Peers() <-chan []string { return c.peers.ch }

// Run creates a Controller for cfg and runs it until ctx is done: the entry
// point of `meshgate run`.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	c, err := New(cfg, opts)
	if err != nil {
		return err
	}
	return c.Start(ctx)
}
