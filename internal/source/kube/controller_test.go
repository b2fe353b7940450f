package kube

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/translate"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// testBuild gives each test its own controller and class names, so tests
// sharing the API server do not see each other's IngressClasses.
func testBuild(t *testing.T) translate.Options {
	n := nsCounter.Add(1)
	return translate.Options{
		ControllerName: fmt.Sprintf("meshgate.io/test-%d", n),
		IngressClass:   fmt.Sprintf("mg-%d", n),
	}
}

func TestObjectsReachHolder(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false))
	h := &routing.Holder{}
	startController(t, Options{Holder: h, Build: bo, Namespace: ns})
	ctx := context.Background()

	mustCreate(t, service(ns, "web", 80), slice(ns, "web-1", "web", "http", 8080, "198.18.0.10"),
		ingress(ns, "web", "a.example.com", "web", &bo.IngressClass))
	waitTable(t, h, "route with one endpoint", func(tb *routing.Table) bool {
		return slices.Equal(endpointsOf(tb, "a.example.com"), []string{"198.18.0.10:8080"})
	})

	// EndpointSlice update: a second endpoint.
	var es discoveryv1.EndpointSlice
	if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-1"}, &es); err != nil {
		t.Fatal(err)
	}
	es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.18.0.11"},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	if err := testClient.Update(ctx, &es); err != nil {
		t.Fatal(err)
	}
	waitTable(t, h, "two endpoints", func(tb *routing.Table) bool {
		return slices.Equal(endpointsOf(tb, "a.example.com"), []string{"198.18.0.10:8080", "198.18.0.11:8080"})
	})

	// TLS: Secret referenced by the Ingress reaches the table; rotating it
	// swaps the certificate; deleting the Ingress drops everything.
	sec := tlsSecret(t, ns, "web-tls", "a.example.com")
	mustCreate(t, sec)
	var ing networkingv1.Ingress
	if err := testClient.Get(ctx, client.ObjectKeyFromObject(ingress(ns, "web", "", "", nil)), &ing); err != nil {
		t.Fatal(err)
	}
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "web-tls"}}
	if err := testClient.Update(ctx, &ing); err != nil {
		t.Fatal(err)
	}
	tb := waitTable(t, h, "TLS host", func(tb *routing.Table) bool { return certSerial(tb, "a.example.com") != "" })
	first := certSerial(tb, "a.example.com")
	rotated := tlsSecret(t, ns, "web-tls", "a.example.com")
	sec.Data = rotated.Data
	if err := testClient.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	waitTable(t, h, "rotated certificate", func(tb *routing.Table) bool {
		s := certSerial(tb, "a.example.com")
		return s != "" && s != first
	})
	if err := testClient.Delete(ctx, sec); err != nil {
		t.Fatal(err)
	}
	waitTable(t, h, "certificate gone with its Secret", func(tb *routing.Table) bool {
		return certSerial(tb, "a.example.com") == ""
	})

	// Service deletion leaves the route without endpoints; Ingress
	// deletion removes the host.
	if err := testClient.Delete(ctx, service(ns, "web", 80)); err != nil {
		t.Fatal(err)
	}
	waitTable(t, h, "no endpoints without the Service", func(tb *routing.Table) bool {
		return len(endpointsOf(tb, "a.example.com")) == 0
	})
	if err := testClient.Delete(ctx, &ing); err != nil {
		t.Fatal(err)
	}
	waitTable(t, h, "host gone", func(tb *routing.Table) bool { return !hasHost(tb, "a.example.com") })
}

func TestUnreferencedSecretsStayOut(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false))
	h := &routing.Holder{}
	c := startController(t, Options{Holder: h, Build: bo, Namespace: ns})
	// A TLS Secret nobody references, and one referenced by an Ingress of
	// another class: neither is loaded. Ours references a third.
	mustCreate(t, tlsSecret(t, ns, "lonely", "x.example.com"), tlsSecret(t, ns, "theirs", "y.example.com"),
		ingress(ns, "theirs", "y.example.com", "svc", ptr.To("other"), withTLS("theirs", "y.example.com")),
		tlsSecret(t, ns, "mine", "z.example.com"),
		ingress(ns, "ours", "z.example.com", "svc", &bo.IngressClass, withTLS("mine", "z.example.com")))
	first := waitTable(t, h, "our host", func(tb *routing.Table) bool { return tb.TLS.Exact["z.example.com"] != nil })
	// Replace our certificate. Secret events arrive in the order the API
	// server wrote the Secrets, so once the new certificate is in the table
	// the handler has also seen the two Secrets created before "mine"; and
	// the theirs Ingress came before ours on the Ingress watch. Whatever
	// would wrongly load them has done so by now.
	var mine corev1.Secret
	if err := testClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "mine"}, &mine); err != nil {
		t.Fatal(err)
	}
	mine.Data = tlsSecret(t, ns, "mine", "z.example.com").Data
	if err := testClient.Update(context.Background(), &mine); err != nil {
		t.Fatal(err)
	}
	old := first.TLS.Exact["z.example.com"].Certificate.Leaf.SerialNumber
	waitTable(t, h, "our new certificate", func(tb *routing.Table) bool {
		th := tb.TLS.Exact["z.example.com"]
		return th != nil && th.Certificate.Leaf.SerialNumber.Cmp(old) != 0
	})
	if loaded := c.handler.secretsLoaded(); loaded != 1 {
		t.Fatalf("secrets loaded: %v, want only ours", loaded)
	}
}

func TestIngressClassRulesAndStatus(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	other := bo.IngressClass + "-other"
	mustCreate(t,
		ingressClass(bo.IngressClass, bo.ControllerName, true),
		ingressClass(other, "example.com/other-controller", false))
	h := &routing.Holder{}
	var passes statusPasses
	startController(t, Options{Holder: h, Build: bo, Namespace: ns, OnStatusApplied: passes.record,
		PublishStatusAddress: []string{"203.0.113.7", "lb.example.net"}})

	cases := []struct {
		name, host string
		class      *string
		annotation string
		ours       bool
	}{
		{"ours", "ours.example.com", &bo.IngressClass, "", true},
		{"other-controller", "other.example.com", &other, "", false},
		{"missing-class", "missing.example.com", ptr.To("no-such-class"), "", false},
		{"default-class", "default.example.com", nil, "", true},
		{"legacy-ours", "legacy.example.com", nil, bo.IngressClass, true},
		{"legacy-other", "legacy-other.example.com", nil, "nginx", false},
	}
	for _, tc := range cases {
		var opts []ingOpt
		if tc.annotation != "" {
			opts = append(opts, withAnnotation(translate.LegacyClassAnnotation, tc.annotation))
		}
		mustCreate(t, ingress(ns, tc.name, tc.host, "svc", tc.class, opts...))
	}
	all := waitTable(t, h, "our hosts", func(tb *routing.Table) bool {
		for _, tc := range cases {
			if hasHost(tb, tc.host) != tc.ours {
				return false
			}
		}
		return true
	})
	want := []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.7"}, {Hostname: "lb.example.net"}}
	slices.SortFunc(want, func(a, b networkingv1.IngressLoadBalancerIngress) int { return compare(a.IP, b.IP) })
	eventually(t, 15*time.Second, "status on our Ingresses", func() bool {
		for _, tc := range cases {
			var ing networkingv1.Ingress
			if err := testClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: tc.name}, &ing); err != nil {
				t.Fatal(err)
			}
			if tc.ours && !slices.EqualFunc(ing.Status.LoadBalancer.Ingress, want, lbEqual) {
				return false
			}
		}
		return true
	})
	// Every Ingress is in the table the writer has now applied: one that
	// wrongly wrote others' status has done so in that pass.
	passes.wait(t, all.Generation)
	for _, tc := range cases {
		var ing networkingv1.Ingress
		if err := testClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: tc.name}, &ing); err != nil {
			t.Fatal(err)
		}
		if !tc.ours && len(ing.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("%s: status %v written on an Ingress that is not ours", tc.name, ing.Status.LoadBalancer.Ingress)
		}
	}
}

func TestPublishServiceStatus(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false))
	h := &routing.Holder{}
	startController(t, Options{Holder: h, Build: bo, Namespace: ns, PublishService: ns + "/meshgate"})
	ctx := context.Background()
	svc := service(ns, "meshgate", 443)
	svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	mustCreate(t, svc, ingress(ns, "web", "a.example.com", "web", &bo.IngressClass))
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.4"}}
	if err := testClient.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "Ingress status from the Service", func() bool {
		var ing networkingv1.Ingress
		if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &ing); err != nil {
			t.Fatal(err)
		}
		lb := ing.Status.LoadBalancer.Ingress
		return len(lb) == 1 && lb[0].IP == "198.51.100.4"
	})
}

func TestEventsOnBadInput(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false))
	h := &routing.Holder{}
	startController(t, Options{Holder: h, Build: bo, Namespace: ns})
	mustCreate(t, ingress(ns, "broken", "b.example.com", "no-such-service", &bo.IngressClass,
		withTLS("no-such-secret", "b.example.com")))
	eventually(t, 15*time.Second, "Warning events on the Ingress", func() bool {
		var evs eventsv1.EventList
		if err := testClient.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		reasons := map[string]bool{}
		for _, e := range evs.Items {
			if e.Regarding.Kind == "Ingress" && e.Regarding.Name == "broken" && e.Type == corev1.EventTypeWarning &&
				e.Regarding.UID != "" {
				reasons[e.Reason] = true
			}
		}
		return reasons[translate.ReasonServiceNotFound] && reasons[translate.ReasonSecretNotFound]
	})
}

func TestStatusRemovedWhenIngressLeavesOurClass(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false))
	h := &routing.Holder{}
	startController(t, Options{Holder: h, Build: bo, Namespace: ns, PublishStatusAddress: []string{"192.0.2.9"}})
	ctx := context.Background()
	mustCreate(t, ingress(ns, "web", "a.example.com", "svc", &bo.IngressClass))
	lb := func() []networkingv1.IngressLoadBalancerIngress {
		var ing networkingv1.Ingress
		if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &ing); err != nil {
			t.Fatal(err)
		}
		return ing.Status.LoadBalancer.Ingress
	}
	eventually(t, 15*time.Second, "status written", func() bool { return len(lb()) == 1 })
	var ing networkingv1.Ingress
	if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &ing); err != nil {
		t.Fatal(err)
	}
	ing.Spec.IngressClassName = ptr.To("someone-else")
	if err := testClient.Update(ctx, &ing); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "status removed", func() bool { return len(lb()) == 0 })
	waitTable(t, h, "host gone", func(tb *routing.Table) bool { return !hasHost(tb, "a.example.com") })
}

func TestL4ConfigMapOnly(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	bo.L4ConfigMap = ns + "/l4"
	h := &routing.Holder{}
	startController(t, Options{Holder: h, Build: bo, Namespace: ns})
	mustCreate(t, service(ns, "db", 5432), slice(ns, "db-1", "db", "http", 5432, "198.18.4.1"),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other"},
			Data: map[string]string{"tcp.9000": ns + "/db:5432"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "l4"},
			Data: map[string]string{"tcp.5432": ns + "/db:5432"}})
	tb := waitTable(t, h, "L4 service", func(tb *routing.Table) bool {
		return len(tb.L4) == 1 && tb.L4[0].Backend != nil && len(tb.L4[0].Backend.Endpoints) == 1
	})
	if got := tb.L4[0]; got.Port != 5432 || got.Protocol != routing.L4TCP {
		t.Fatalf("L4 = %+v, want only tcp 5432 from the configured ConfigMap", got)
	}
}
