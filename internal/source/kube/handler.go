package kube

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/meshgate/meshgate/internal/source/debounce"
	"github.com/meshgate/meshgate/internal/translate"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// eventQueueSize bounds the channel between the informers and the owner
// goroutine. A full queue blocks the informer's delivery goroutine (the
// informer buffers internally), which is the back-pressure we want.
const eventQueueSize = 1024

// secretFetchTimeout bounds one uncached Secret read; secretRetry is the
// pause before fetching again after a failure.
const (
	secretFetchTimeout = 5 * time.Second
	secretRetry        = time.Second
)

type opKind uint8

const (
	opUpsert opKind = iota
	opDelete
	opSecretMeta       // metadata of a kubernetes.io/tls Secret added or changed
	opSecretMetaDelete // such a Secret deleted
	opCAMeta           // metadata of a ConfigMap added or changed (BackendTLSPolicy CAs)
	opCAMetaDelete     // such a ConfigMap deleted
	opSynced           // every informer delivered its initial list
)

type event struct {
	op  opKind
	obj client.Object
	at  time.Time
}

// handler is the owner goroutine: it alone touches cache and the maps
// below. Informer callbacks only send on events.
type handler struct {
	opts    Options
	inf     cache.Informers
	mapper  meta.RESTMapper // tells which Gateway API CRDs the cluster serves
	reader  client.Reader   // uncached: referenced Secrets are read through it
	status  *statusWriter
	peers   *peerStream
	log     logr.Logger
	events  chan event
	done    chan struct{} // closed when Start returns; unblocks senders
	synced  chan struct{} // closed after the first publish
	meshNN  types.NamespacedName
	secrets *secretTracker
	cas     *secretTracker // BackendTLSPolicy CA ConfigMaps

	cache    *translate.Cache
	gen      uint64
	isSynced bool
}

func newHandler(opts Options, inf cache.Informers, reader client.Reader, mapper meta.RESTMapper, sw *statusWriter, ps *peerStream) *handler {
	h := &handler{
		opts: opts, inf: inf, reader: reader, mapper: mapper, status: sw, peers: ps,
		log:    opts.Logger.WithName("handler"),
		events: make(chan event, eventQueueSize),
		done:   make(chan struct{}),
		synced: make(chan struct{}),
		meshNN: mustNN(opts.MeshService),
		cache:  translate.NewCache(opts.Build.L4ConfigMap),
	}
	h.secrets = newSecretTracker(reader, h.cache, opts.Build, h.log)
	h.cas = newCATracker(reader, h.cache, opts.Build, h.log)
	return h
}

// NeedLeaderElection: every replica builds its own table.
func (h *handler) NeedLeaderElection() bool { return false }

// Start registers the informer callbacks and runs the owner loop until ctx
// is done (manager.Runnable).
func (h *handler) Start(ctx context.Context) error {
	defer close(h.done)
	regs, err := h.register(ctx)
	if err != nil {
		return err
	}
	go h.waitSynced(ctx, regs)
	return h.loop(ctx)
}

func (h *handler) register(ctx context.Context) ([]toolscache.ResourceEventHandlerRegistration, error) {
	var regs []toolscache.ResourceEventHandlerRegistration
	add := func(obj client.Object, up, del opKind) error {
		inf, err := h.inf.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("kube: informer for %T: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { h.enqueue(up, o) },
			UpdateFunc: func(_, o any) { h.enqueue(up, o) },
			DeleteFunc: func(o any) { h.enqueue(del, o) },
		})
		if err != nil {
			return fmt.Errorf("kube: event handler for %T: %w", obj, err)
		}
		regs = append(regs, reg)
		return nil
	}
	for _, obj := range watchedKinds(h.opts) {
		if err := add(obj, opUpsert, opDelete); err != nil {
			return nil, err
		}
	}
	if err := add(secretMetaObject(), opSecretMeta, opSecretMetaDelete); err != nil {
		return nil, err
	}
	gw := h.servedGatewayKinds()
	if len(gw) > 0 {
		gw = append(gw, &corev1.Namespace{})
	}
	for _, obj := range gw {
		if err := add(obj, opUpsert, opDelete); err != nil {
			return nil, err
		}
	}
	if slices.ContainsFunc(gw, func(o client.Object) bool { _, ok := o.(*gatewayv1.BackendTLSPolicy); return ok }) {
		if err := add(configMapMetaObject(), opCAMeta, opCAMetaDelete); err != nil {
			return nil, err
		}
	}
	return regs, nil
}

// servedGatewayKinds returns the Gateway API kinds whose CRDs the API
// server serves. Without the CRDs meshgate serves Ingress only; CRDs
// installed later take effect at the next start.
func (h *handler) servedGatewayKinds() []client.Object {
	var out []client.Object
	for _, obj := range gatewayKinds() {
		gvk := schema.GroupVersionKind{Group: gatewayv1.GroupName, Version: "v1", Kind: reflect.TypeOf(obj).Elem().Name()}
		if _, err := h.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			h.log.Info("Gateway API kind not served by the cluster; not watched", "kind", gvk.Kind, "reason", err.Error())
			continue
		}
		out = append(out, obj)
	}
	return out
}

func (h *handler) waitSynced(ctx context.Context, regs []toolscache.ResourceEventHandlerRegistration) {
	fns := make([]toolscache.InformerSynced, len(regs))
	for i, r := range regs {
		fns[i] = r.HasSynced
	}
	if toolscache.WaitForCacheSync(ctx.Done(), fns...) {
		h.send(event{op: opSynced, at: time.Now()})
	}
}

// enqueue is the informer callback: unwrap tombstones, send, never touch
// state.
func (h *handler) enqueue(op opKind, o any) {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	obj, ok := o.(client.Object)
	if !ok {
		return
	}
	h.send(event{op: op, obj: obj, at: time.Now()})
}

func (h *handler) send(ev event) {
	select {
	case h.events <- ev:
	case <-h.done:
	}
}

// loop owns the cache: it applies events, debounces them (see
// internal/source/debounce) and rebuilds.
func (h *handler) loop(ctx context.Context) error {
	deb := debounce.New(h.opts.HoldOff, h.opts.MaxDelay)
	defer deb.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-h.events:
			if !h.apply(ctx, ev) || !h.isSynced {
				if ev.op == opSynced {
					h.isSynced = true
					h.rebuild(ctx, time.Time{})
					close(h.synced)
				}
				continue
			}
			deb.Changed(ev.at)
		case <-deb.C():
			h.rebuild(ctx, deb.Fired())
		case <-retry.C:
			if s, c := h.secrets.retryFailed(ctx), h.cas.retryFailed(ctx); s || c {
				h.rebuild(ctx, time.Now())
			}
		}
		if h.secrets.hasFailed() || h.cas.hasFailed() {
			retry.Reset(secretRetry)
		}
	}
}

// apply updates the cache with ev and reports whether the table may have
// changed.
func (h *handler) apply(ctx context.Context, ev event) bool {
	switch ev.op {
	case opUpsert:
		changed := h.cache.Insert(ev.obj)
		h.meshChanged(ev.obj)
		return changed
	case opDelete:
		changed := h.cache.Remove(ev.obj)
		h.meshChanged(ev.obj)
		return changed
	case opSecretMeta:
		return h.secrets.metaChanged(ctx, ev.obj)
	case opSecretMetaDelete:
		return h.secrets.metaDeleted(ev.obj)
	case opCAMeta:
		return h.cas.metaChanged(ctx, ev.obj)
	case opCAMetaDelete:
		return h.cas.metaDeleted(ev.obj)
	}
	return false
}

// meshChanged republishes the peer set when obj is an EndpointSlice of the
// mesh Service.
func (h *handler) meshChanged(obj client.Object) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || h.meshNN.Name == "" || es.Namespace != h.meshNN.Namespace ||
		es.Labels[discoveryv1.LabelServiceName] != h.meshNN.Name {
		return
	}
	h.peers.publish(peersFrom(h.cache.EndpointSlicesFor(h.meshNN.Namespace, h.meshNN.Name), h.opts.MeshPortName))
}

// rebuild fetches newly referenced Secrets, builds, publishes and hands the
// desired status to the status writer. changedAt is when the oldest change
// in this build was received.
func (h *handler) rebuild(ctx context.Context, changedAt time.Time) {
	h.secrets.sync(ctx, h.cache)
	h.cas.sync(ctx, h.cache)
	h.gen++
	bo := h.opts.Build
	bo.Generation, bo.Now = h.gen, time.Now()
	bo.GatewayAddresses = h.gatewayAddresses()
	r := translate.Translate(h.cache, bo)
	t, problems := r.Table, r.Problems
	h.opts.Holder.Store(t)
	if h.opts.OnPublish != nil {
		h.opts.OnPublish(t, problems, changedAt)
	}
	h.status.update(h.desired(t.Generation, problems, r.Gateway))
	if h.gen == 1 && h.meshNN.Name != "" {
		h.peers.publish(peersFrom(h.cache.EndpointSlicesFor(h.meshNN.Namespace, h.meshNN.Name), h.opts.MeshPortName))
	}
	h.log.V(1).Info("published table", "generation", t.Generation, "problems", len(problems))
}

// metaKey names an object by its metadata only.
func metaKey(o metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}
