package kube

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/meshgate/meshgate/internal/translate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Gateway API status is written by the leader like Ingress status:
// GatewayClasses, Gateways and ListenerSets of our class belong to meshgate
// alone and are server-side applied (field manager Options.FieldManager);
// route status.parents is an atomic list shared with other controllers, so
// our entries (controllerName meshgate.io/gateway-controller) are merged
// into it with an optimistic-concurrency Update. Writes are skipped when
// nothing but transition times would change.

// applyGatewayAPI writes d. The first error is returned after trying
// every object.
func (w *statusWriter) applyGatewayAPI(ctx context.Context, d *translate.GatewayStatuses) error {
	if d == nil {
		return nil
	}
	var errs []error
	for name, st := range d.Classes {
		errs = append(errs, w.applyClass(ctx, name, st))
	}
	for nn, st := range d.Gateways {
		errs = append(errs, w.applyGatewayStatus(ctx, nn, st))
	}
	for nn, st := range d.ListenerSets {
		errs = append(errs, w.applyListenerSet(ctx, nn, st))
	}
	for rk, parents := range d.Routes {
		if err := w.applyRoute(ctx, rk, parents); err != nil {
			errs = append(errs, err)
			continue
		}
		w.routes[rk] = struct{}{}
	}
	for nn, anc := range d.BackendTLSPolicies {
		errs = append(errs, w.applyBackendTLS(ctx, nn, anc))
	}
	for rk := range w.routes {
		if _, ok := d.Routes[rk]; ok {
			continue
		}
		// No longer attached to one of our Gateways: take our entries back.
		if err := w.applyRoute(ctx, rk, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(w.routes, rk)
	}
	return errors.Join(errs...)
}

// stale reports whether conditions computed for generation gen are
// older than the object (the handler will send newer ones).
func stale(obj metav1.Object, conds []metav1.Condition) bool {
	return len(conds) > 0 && conds[0].ObservedGeneration != obj.GetGeneration()
}

func (w *statusWriter) applyClass(ctx context.Context, name string, st translate.ClassStatus) error {
	var gc gatewayv1.GatewayClass
	if err := w.c.Get(ctx, types.NamespacedName{Name: name}, &gc); err != nil {
		return client.IgnoreNotFound(err)
	}
	if stale(&gc, st.Conditions) {
		return nil
	}
	if translate.ConditionsEqual(gc.Status.Conditions, st.Conditions) && slices.Equal(gc.Status.SupportedFeatures, st.SupportedFeatures) {
		return nil
	}
	status := gatewayv1.GatewayClassStatus{
		Conditions:        translate.SetConditionTimes(gc.Status.Conditions, st.Conditions, metav1.Now()),
		SupportedFeatures: st.SupportedFeatures,
	}
	return w.applyStatus(ctx, "GatewayClass", types.NamespacedName{Name: name}, &status)
}

func (w *statusWriter) applyGatewayStatus(ctx context.Context, nn types.NamespacedName, st translate.GatewayStatus) error {
	var gw gatewayv1.Gateway
	if err := w.c.Get(ctx, nn, &gw); err != nil {
		return client.IgnoreNotFound(err)
	}
	if stale(&gw, st.Conditions) {
		return nil
	}
	cur := gw.Status
	if translate.ConditionsEqual(cur.Conditions, st.Conditions) && listenersEqual(cur.Listeners, st.Listeners) &&
		reflect.DeepEqual(cur.Addresses, st.Addresses) && reflect.DeepEqual(cur.AttachedListenerSets, st.AttachedListenerSets) {
		return nil
	}
	now := metav1.Now()
	status := gatewayv1.GatewayStatus{
		Addresses:            st.Addresses,
		Conditions:           translate.SetConditionTimes(cur.Conditions, st.Conditions, now),
		AttachedListenerSets: st.AttachedListenerSets,
	}
	for _, l := range st.Listeners {
		l.Conditions = translate.SetConditionTimes(listenerConds(cur.Listeners, l.Name), l.Conditions, now)
		status.Listeners = append(status.Listeners, l)
	}
	return w.applyStatus(ctx, "Gateway", nn, &status)
}

func (w *statusWriter) applyListenerSet(ctx context.Context, nn types.NamespacedName, st gatewayv1.ListenerSetStatus) error {
	var ls gatewayv1.ListenerSet
	if err := w.c.Get(ctx, nn, &ls); err != nil {
		return client.IgnoreNotFound(err)
	}
	if stale(&ls, st.Conditions) {
		return nil
	}
	cur := ls.Status
	same := translate.ConditionsEqual(cur.Conditions, st.Conditions) && len(cur.Listeners) == len(st.Listeners)
	for i := 0; same && i < len(st.Listeners); i++ {
		a, b := cur.Listeners[i], st.Listeners[i]
		same = a.Name == b.Name && a.AttachedRoutes == b.AttachedRoutes && reflect.DeepEqual(a.SupportedKinds, b.SupportedKinds) &&
			translate.ConditionsEqual(a.Conditions, b.Conditions)
	}
	if same {
		return nil
	}
	now := metav1.Now()
	out := gatewayv1.ListenerSetStatus{Conditions: translate.SetConditionTimes(cur.Conditions, st.Conditions, now)}
	for _, l := range st.Listeners {
		var prev []metav1.Condition
		for _, c := range cur.Listeners {
			if c.Name == l.Name {
				prev = c.Conditions
			}
		}
		l.Conditions = translate.SetConditionTimes(prev, l.Conditions, now)
		out.Listeners = append(out.Listeners, l)
	}
	return w.applyStatus(ctx, "ListenerSet", nn, &out)
}

func listenerConds(ls []gatewayv1.ListenerStatus, name gatewayv1.SectionName) []metav1.Condition {
	for _, l := range ls {
		if l.Name == name {
			return l.Conditions
		}
	}
	return nil
}

func listenersEqual(a, b []gatewayv1.ListenerStatus) bool {
	return slices.EqualFunc(a, b, func(x, y gatewayv1.ListenerStatus) bool {
		return x.Name == y.Name && x.AttachedRoutes == y.AttachedRoutes &&
			kindsEqual(x.SupportedKinds, y.SupportedKinds) && translate.ConditionsEqual(x.Conditions, y.Conditions)
	})
}

func kindsEqual(a, b []gatewayv1.RouteGroupKind) bool {
	return slices.EqualFunc(a, b, func(x, y gatewayv1.RouteGroupKind) bool {
		gx, gy := gatewayv1.Group(gatewayv1.GroupName), gatewayv1.Group(gatewayv1.GroupName)
		if x.Group != nil {
			gx = *x.Group
		}
		if y.Group != nil {
			gy = *y.Group
		}
		return gx == gy && x.Kind == y.Kind
	})
}

// applyStatus server-side-applies status (a typed *...Status) to the
// object kind/nn of the Gateway API group.
func (w *statusWriter) applyStatus(ctx context.Context, kind string, nn types.NamespacedName, status any) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(status)
	if err != nil {
		return fmt.Errorf("%s %s status: %w", kind, nn, err)
	}
	md := map[string]any{"name": nn.Name}
	if nn.Namespace != "" {
		md["namespace"] = nn.Namespace
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gatewayv1.GroupVersion.String(), "kind": kind, "metadata": md, "status": m,
	}}
	err = w.c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(w.opts.FieldManager), client.ForceOwnership)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %s status: %w", kind, nn, err)
	}
	return nil
}

// routeObject returns an empty typed route of kind and a pointer to its
// RouteStatus.
func routeObject(kind string) (client.Object, *gatewayv1.RouteStatus) {
	switch kind {
	case "HTTPRoute":
		o := &gatewayv1.HTTPRoute{}
		return o, &o.Status.RouteStatus
	case "GRPCRoute":
		o := &gatewayv1.GRPCRoute{}
		return o, &o.Status.RouteStatus
	case "TLSRoute":
		o := &gatewayv1.TLSRoute{}
		return o, &o.Status.RouteStatus
	case "TCPRoute":
		o := &gatewayv1.TCPRoute{}
		return o, &o.Status.RouteStatus
	case "UDPRoute":
		o := &gatewayv1.UDPRoute{}
		return o, &o.Status.RouteStatus
	}
	return nil, nil
}

// applyRoute replaces our entries of a route's status.parents with ours
// (nil removes them), keeping other controllers' entries.
func (w *statusWriter) applyRoute(ctx context.Context, rk translate.RouteKey, ours []gatewayv1.RouteParentStatus) error {
	obj, st := routeObject(rk.Kind)
	if obj == nil {
		return nil
	}
	if err := w.c.Get(ctx, rk.NamespacedName, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if len(ours) > 0 && len(ours[0].Conditions) > 0 && ours[0].Conditions[0].ObservedGeneration != obj.GetGeneration() {
		return nil
	}
	controller := gatewayv1.GatewayController(w.opts.Build.GatewayControllerName)
	merged, changed := mergeOurs(st.Parents, ours,
		func(p gatewayv1.RouteParentStatus) bool { return p.ControllerName == controller },
		func(a, b gatewayv1.RouteParentStatus) bool { return reflect.DeepEqual(a.ParentRef, b.ParentRef) },
		func(p *gatewayv1.RouteParentStatus) *[]metav1.Condition { return &p.Conditions })
	if !changed {
		return nil
	}
	st.Parents = merged
	if err := w.c.Status().Update(ctx, obj, client.FieldOwner(w.opts.FieldManager)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %s status: %w", rk.Kind, rk.NamespacedName, err)
	}
	return nil
}

// applyBackendTLS replaces our entries of a BackendTLSPolicy's
// status.ancestors (an atomic list shared with other controllers).
func (w *statusWriter) applyBackendTLS(ctx context.Context, nn types.NamespacedName, ours []gatewayv1.PolicyAncestorStatus) error {
	var p gatewayv1.BackendTLSPolicy
	if err := w.c.Get(ctx, nn, &p); err != nil {
		return client.IgnoreNotFound(err)
	}
	if len(ours) > 0 && ours[0].Conditions[0].ObservedGeneration != p.Generation {
		return nil
	}
	controller := gatewayv1.GatewayController(w.opts.Build.GatewayControllerName)
	merged, changed := mergeOurs(p.Status.Ancestors, ours,
		func(a gatewayv1.PolicyAncestorStatus) bool { return a.ControllerName == controller },
		func(a, b gatewayv1.PolicyAncestorStatus) bool { return reflect.DeepEqual(a.AncestorRef, b.AncestorRef) },
		func(a *gatewayv1.PolicyAncestorStatus) *[]metav1.Condition { return &a.Conditions })
	if !changed {
		return nil
	}
	p.Status.Ancestors = merged
	if err := w.c.Status().Update(ctx, &p, client.FieldOwner(w.opts.FieldManager)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("BackendTLSPolicy %s status: %w", nn, err)
	}
	return nil
}

// mergeOurs returns all with the entries isOurs selects replaced by ours
// (in that order, after the others), each of ours keeping the transition
// times of the previous entry sameRef pairs it with. changed is false when
// ours equal our previous entries, transition times aside: nothing to write.
// The result is never nil (status lists are required).
func mergeOurs[T any](all, ours []T, isOurs func(T) bool, sameRef func(a, b T) bool, conds func(*T) *[]metav1.Condition) (_ []T, changed bool) {
	var kept, prev []T
	for _, e := range all {
		if isOurs(e) {
			prev = append(prev, e)
		} else {
			kept = append(kept, e)
		}
	}
	same := slices.EqualFunc(prev, ours, func(a, b T) bool {
		return sameRef(a, b) && translate.ConditionsEqual(*conds(&a), *conds(&b))
	})
	if same {
		return all, false
	}
	now := metav1.Now()
	for _, e := range ours {
		var old []metav1.Condition
		for _, q := range prev {
			if sameRef(q, e) {
				old = *conds(&q)
			}
		}
		c := conds(&e)
		*c = translate.SetConditionTimes(old, *c, now)
		kept = append(kept, e)
	}
	if kept == nil {
		kept = []T{}
	}
	return kept, true
}
