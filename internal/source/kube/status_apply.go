package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/translate"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// apply writes every status that differs from d. Reads come from the
// manager's cache (the same informers the handler uses); a stale read
// costs at most one redundant, idempotent write.
func (w *statusWriter) apply(ctx context.Context, d *desiredStatus) error {
	var errs []error
	for nn, want := range d.ingresses {
		if err := w.applyIngress(ctx, nn, want); err != nil {
			errs = append(errs, err)
			continue
		}
		w.written[nn] = struct{}{}
	}
	for nn := range w.written {
		if _, ok := d.ingresses[nn]; ok {
			continue
		}
		// No longer ours: take our address back.
		if err := w.applyIngress(ctx, nn, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(w.written, nn)
	}
	for nn, want := range d.policies {
		if err := w.applyPolicy(ctx, nn, want); err != nil {
			errs = append(errs, err)
		}
	}
	if err := w.applyGatewayAPI(ctx, d.gateway); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (w *statusWriter) applyIngress(ctx context.Context, nn types.NamespacedName, want []networkingv1.IngressLoadBalancerIngress) error {
	var ing networkingv1.Ingress
	if err := w.c.Get(ctx, nn, &ing); err != nil {
		return client.IgnoreNotFound(err)
	}
	if slices.EqualFunc(ing.Status.LoadBalancer.Ingress, want, lbEqual) {
		return nil
	}
	orig := ing.DeepCopy()
	ing.Status.LoadBalancer.Ingress = want
	if err := w.c.Status().Patch(ctx, &ing, client.MergeFrom(orig)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("ingress %s status: %w", nn, err)
	}
	return nil
}

// lbEqual compares the fields meshgate writes.
func lbEqual(a, b networkingv1.IngressLoadBalancerIngress) bool {
	return a.IP == b.IP && a.Hostname == b.Hostname && len(a.Ports) == 0 && len(b.Ports) == 0
}

// policyConditions returns the Accepted and Programmed conditions for want,
// keeping the transition times of unchanged conditions in cur.
func policyConditions(cur []metav1.Condition, want policyStatus) []metav1.Condition {
	out := slices.Clone(cur)
	acc := metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonAccepted, Message: "the policy is valid", ObservedGeneration: want.generation}
	prog := metav1.Condition{Type: v1alpha1.ConditionProgrammed, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonProgrammed, Message: "serving with this generation", ObservedGeneration: want.generation}
	if !want.accepted {
		acc.Status, acc.Reason, acc.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalid, want.message
		prog.Status, prog.Reason, prog.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalid, "not serving an invalid policy"
	}
	meta.SetStatusCondition(&out, acc)
	meta.SetStatusCondition(&out, prog)
	return out
}

// conditionsEqual ignores LastTransitionTime.
func conditionsEqual(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason &&
			x.Message == y.Message && x.ObservedGeneration == y.ObservedGeneration
	})
}

// applyPolicy server-side-applies the TLSPolicy conditions when they
// changed, as field manager Options.FieldManager.
func (w *statusWriter) applyPolicy(ctx context.Context, nn types.NamespacedName, want policyStatus) error {
	var pol v1alpha1.TLSPolicy
	if err := w.c.Get(ctx, nn, &pol); err != nil {
		return client.IgnoreNotFound(err)
	}
	if pol.Generation != want.generation {
		return nil // the handler will send a newer target
	}
	conds := policyConditions(pol.Status.Conditions, want)
	if conditionsEqual(conds, pol.Status.Conditions) && ancestorsEqual(pol.Status.Ancestors, want.ancestors) {
		return nil
	}
	// Apply only our two conditions: other managers' conditions stay theirs.
	ours := slices.DeleteFunc(slices.Clone(conds), func(c metav1.Condition) bool {
		return c.Type != v1alpha1.ConditionAccepted && c.Type != v1alpha1.ConditionProgrammed
	})
	list := make([]any, 0, len(ours))
	for i := range ours {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&ours[i])
		if err != nil {
			return fmt.Errorf("tlspolicy %s condition: %w", nn, err)
		}
		list = append(list, m)
	}
	status := map[string]any{"conditions": list}
	if len(want.ancestors) > 0 || len(pol.Status.Ancestors) > 0 {
		anc := make([]any, 0, len(want.ancestors))
		now := metav1.Now()
		for _, a := range want.ancestors {
			var prev []metav1.Condition
			for _, p := range pol.Status.Ancestors {
				if p.AncestorRef == a.AncestorRef {
					prev = p.Conditions
				}
			}
			a.Conditions = translate.SetConditionTimes(prev, a.Conditions, now)
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&a)
			if err != nil {
				return fmt.Errorf("tlspolicy %s ancestor: %w", nn, err)
			}
			anc = append(anc, m)
		}
		status["ancestors"] = anc
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "TLSPolicy",
		"metadata":   map[string]any{"name": nn.Name, "namespace": nn.Namespace},
		"status":     status,
	}}
	err := w.c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(w.opts.FieldManager), client.ForceOwnership)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("tlspolicy %s status: %w", nn, err)
	}
	return nil
}

// ancestorsEqual compares TLSPolicy ancestors ignoring transition times.
func ancestorsEqual(a, b []v1alpha1.PolicyAncestorStatus) bool {
	return slices.EqualFunc(a, b, func(x, y v1alpha1.PolicyAncestorStatus) bool {
		return x.AncestorRef == y.AncestorRef && x.ControllerName == y.ControllerName && conditionsEqual(x.Conditions, y.Conditions)
	})
}
