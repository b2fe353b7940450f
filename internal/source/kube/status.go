package kube

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/translate"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// statusRetry is the pause before retrying a failed status write.
const statusRetry = time.Second

// desiredStatus is what the leader should make true after one build. It is
// immutable once handed to the status writer.
type desiredStatus struct {
	// ingresses maps each Ingress of our class to its load-balancer
	// status; nil when Ingress status is not managed.
	ingresses map[types.NamespacedName][]networkingv1.IngressLoadBalancerIngress
	// policies maps each TLSPolicy to its conditions (without times).
	policies map[types.NamespacedName]policyStatus
	// problems found by the build, with the object UIDs known to the cache.
	problems []problemRef
	// gateway is the Gateway API status of the build; nil writes none.
	gateway *translate.GatewayStatuses
	// generation is the generation of the table this status belongs to.
	generation uint64
}

type policyStatus struct {
	generation int64
	accepted   bool
	message    string
	// ancestors is status.ancestors (targetRefs outcome), nil without
	// targetRefs.
	ancestors []v1alpha1.PolicyAncestorStatus
}

type problemRef struct {
	translate.Problem
	ref *corev1.ObjectReference
}

// desired derives the status writer's targets from the cache and the
// problems of the build just published. Owner goroutine only.
func (h *handler) desired(generation uint64, problems []translate.Problem, gw *translate.GatewayStatuses) *desiredStatus {
	d := &desiredStatus{policies: map[types.NamespacedName]policyStatus{}, gateway: gw, generation: generation}
	classes := h.cache.IngressClasses()
	ings := h.cache.Ingresses()
	byName := make(map[types.NamespacedName]*networkingv1.Ingress, len(ings))
	for _, ing := range ings {
		byName[metaKey(ing)] = ing
	}
	if addrs, ok := h.publishAddresses(); ok {
		d.ingresses = map[types.NamespacedName][]networkingv1.IngressLoadBalancerIngress{}
		for _, ing := range ings {
			if translate.IsOurs(ing, classes, h.opts.Build) {
				d.ingresses[metaKey(ing)] = addrs
			}
		}
	}
	invalid := map[types.NamespacedName]string{}
	for _, p := range problems {
		nn := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
		if p.Kind == "TLSPolicy" && p.Reason == translate.ReasonInvalidPolicy {
			invalid[nn] = p.Message
		}
		d.problems = append(d.problems, problemRef{Problem: p, ref: h.reference(p, nn, byName)})
	}
	for _, pol := range h.cache.TLSPolicies() {
		nn := metaKey(pol)
		msg, bad := invalid[nn]
		ps := policyStatus{generation: pol.Generation, accepted: !bad, message: msg}
		if gw != nil {
			ps.ancestors = gw.TLSPolicies[nn]
		}
		d.policies[nn] = ps
	}
	return d
}

// reference names the object a problem is about, with its UID when cached.
func (h *handler) reference(p translate.Problem, nn types.NamespacedName, ings map[types.NamespacedName]*networkingv1.Ingress) *corev1.ObjectReference {
	ref := &corev1.ObjectReference{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
	switch p.Kind {
	case "Ingress":
		ref.APIVersion = networkingv1.SchemeGroupVersion.String()
		if ing := ings[nn]; ing != nil {
			ref.UID = ing.UID
		}
	case "TLSPolicy":
		ref.APIVersion = v1alpha1.GroupVersion.String()
		if pol, err := h.cache.LookupTLSPolicy(nn.Namespace, nn.Name); err == nil {
			ref.UID = pol.UID
		}
	case "GatewayClass", "Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute", "ReferenceGrant", "BackendTLSPolicy":
		ref.APIVersion = gatewayv1.GroupVersion.String()
	case "ConfigMap":
		ref.APIVersion = "v1"
		if cm, err := h.cache.LookupConfigMap(nn.Namespace, nn.Name); err == nil {
			ref.UID = cm.UID
		}
	default:
		ref.APIVersion = "v1"
	}
	return ref
}

// publishAddresses returns the Ingress status addresses, and false when
// Ingress status is not managed (no flag set).
func (h *handler) publishAddresses() ([]networkingv1.IngressLoadBalancerIngress, bool) {
	var out []networkingv1.IngressLoadBalancerIngress
	switch {
	case len(h.opts.PublishStatusAddress) > 0:
		for _, a := range h.opts.PublishStatusAddress {
			out = append(out, lbIngress(a))
		}
	case h.opts.PublishService != "":
		nn := mustNN(h.opts.PublishService)
		svc, err := h.cache.LookupService(nn.Namespace, nn.Name)
		if err != nil {
			return nil, true // not there yet: publish no address
		}
		for _, lb := range svc.Status.LoadBalancer.Ingress {
			out = append(out, networkingv1.IngressLoadBalancerIngress{IP: lb.IP, Hostname: lb.Hostname})
		}
		if len(out) == 0 {
			for _, ip := range svc.Spec.ExternalIPs {
				out = append(out, lbIngress(ip))
			}
		}
	default:
		return nil, false
	}
	slices.SortFunc(out, func(a, b networkingv1.IngressLoadBalancerIngress) int {
		if a.IP != b.IP {
			return compare(a.IP, b.IP)
		}
		return compare(a.Hostname, b.Hostname)
	})
	return slices.CompactFunc(out, func(a, b networkingv1.IngressLoadBalancerIngress) bool {
		return a.IP == b.IP && a.Hostname == b.Hostname
	}), true
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func lbIngress(a string) networkingv1.IngressLoadBalancerIngress {
	if _, err := netip.ParseAddr(a); err == nil {
		return networkingv1.IngressLoadBalancerIngress{IP: a}
	}
	return networkingv1.IngressLoadBalancerIngress{Hostname: a}
}

// statusWriter applies the newest desiredStatus, on the leader only. The
// handler replaces the pending target (a one-slot mailbox: intermediate
// targets are skipped), so the writer never queues.
type statusWriter struct {
	opts   Options
	c      client.Client
	rec    recorder.EventRecorder
	log    logr.Logger
	mu     sync.Mutex
	next   *desiredStatus
	notify chan struct{} // capacity 1

	// owned by Start's goroutine
	emitted map[problemKey]struct{}
	// written lists the Ingresses this leader gave an address, so that an
	// Ingress leaving our class (or deleted Ingress status management) has
	// its address removed again.
	written map[types.NamespacedName]struct{}
	// routes lists the Gateway API routes this leader wrote parent
	// entries into, so that a route leaving our Gateways loses them.
	routes map[translate.RouteKey]struct{}
}

type problemKey struct {
	kind, ns, name, reason, msg string
}

func newStatusWriter(opts Options, c client.Client, rec recorder.EventRecorder) *statusWriter {
	return &statusWriter{
		opts: opts, c: c, rec: rec, log: opts.Logger.WithName("status"),
		notify:  make(chan struct{}, 1),
		emitted: map[problemKey]struct{}{},
		written: map[types.NamespacedName]struct{}{},
		routes:  map[translate.RouteKey]struct{}{},
	}
}

// update hands over a new target; it never blocks.
func (w *statusWriter) update(d *desiredStatus) {
	w.mu.Lock()
	w.next = d
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// NeedLeaderElection: only the leader writes.
func (w *statusWriter) NeedLeaderElection() bool { return true }

// Start applies targets until ctx is done (manager.Runnable).
func (w *statusWriter) Start(ctx context.Context) error {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.notify:
		case <-retry.C:
		}
		w.mu.Lock()
		d := w.next
		w.mu.Unlock()
		if d == nil {
			continue
		}
		w.emitEvents(d)
		err := w.apply(ctx, d)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.log.Error(err, "writing status; will retry")
			retry.Reset(statusRetry)
		}
		if w.opts.OnStatusApplied != nil {
			w.opts.OnStatusApplied(d.generation, err)
		}
	}
}

// emitEvents records a Warning Event for each problem not reported since
// this replica became leader, and forgets problems that went away so they
// are reported again if they come back.
func (w *statusWriter) emitEvents(d *desiredStatus) {
	now := make(map[problemKey]struct{}, len(d.problems))
	for _, p := range d.problems {
		k := problemKey{p.Kind, p.Namespace, p.Name, p.Reason, p.Message}
		now[k] = struct{}{}
		if _, done := w.emitted[k]; done {
			continue
		}
		w.rec.Eventf(p.ref, nil, corev1.EventTypeWarning, p.Reason, "Build", "%s", p.Message)
	}
	w.emitted = now
}

// gatewayAddresses returns the addresses published in Gateway status: the
// same ones Ingress status gets (--publish-status-address, else the
// published Service's). Owner goroutine only.
func (h *handler) gatewayAddresses() []string {
	lbs, _ := h.publishAddresses()
	var out []string
	for _, lb := range lbs {
		if lb.IP != "" {
			out = append(out, lb.IP)
		} else if lb.Hostname != "" {
			out = append(out, lb.Hostname)
		}
	}
	return out
}
