package kube

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/translate"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func gwBuild(t *testing.T) translate.Options {
	bo := testBuild(t)
	bo.GatewayControllerName = fmt.Sprintf("meshgate.io/gw-test-%d", nsCounter.Add(1))
	return bo
}

func hroute(ns, name, gw, section, host, svc string, port int32) *gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p := gatewayv1.ParentReference{Name: gatewayv1.ObjectName(gw)}
	if section != "" {
		p.SectionName = ptr.To(gatewayv1.SectionName(section))
	}
	r.Spec.ParentRefs = []gatewayv1.ParentReference{p}
	r.Spec.Hostnames = []gatewayv1.Hostname{gatewayv1.Hostname(host)}
	r.Spec.Rules = []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(svc), Port: ptr.To(port)}}}}}}
	return r
}

func routeCond(t *testing.T, nn types.NamespacedName, typ string) *metav1.Condition {
	t.Helper()
	var r gatewayv1.HTTPRoute
	if err := testClient.Get(context.Background(), nn, &r); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Status.Parents {
		if c := apimeta.FindStatusCondition(p.Conditions, typ); c != nil && c.ObservedGeneration == r.Generation {
			return c
		}
	}
	return nil
}

// TestGatewayAPIStatusAndServing runs the controller against a real API
// server with the Gateway API CRDs: the leader writes every status, an
// invalid route gets its conditions and reasons, and the valid routes keep
// serving whatever the invalid one does.
func TestGatewayAPIStatusAndServing(t *testing.T) {
	ns := newNamespace(t)
	bo := gwBuild(t)
	ctx := context.Background()
	className := "gwc-" + ns
	mustCreate(t,
		&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: className}, Spec: gatewayv1.GatewayClassSpec{ControllerName: gatewayv1.GatewayController(bo.GatewayControllerName)}},
		service(ns, "web", 8080), slice(ns, "web-1", "web", "http", 8080, "198.18.0.5"),
		tlsSecret(t, ns, "cert", "secure.example.com"),
		&gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw"}, Spec: gatewayv1.GatewaySpec{
			GatewayClassName: gatewayv1.ObjectName(className),
			Listeners: []gatewayv1.Listener{
				{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80},
				{Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443, Hostname: ptr.To(gatewayv1.Hostname("secure.example.com")),
					TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "cert"}}}},
				{Name: "other-port", Protocol: gatewayv1.HTTPProtocolType, Port: 8081},
			}}},
		hroute(ns, "good", "gw", "http", "good.example.com", "web", 8080),
		hroute(ns, "secure", "gw", "https", "secure.example.com", "web", 8080),
		hroute(ns, "missing-backend", "gw", "http", "missing.example.com", "nope", 80),
		hroute(ns, "bad-section", "gw", "nosuch", "bad.example.com", "web", 8080),
	)
	h := &routing.Holder{}
	startController(t, Options{Holder: h, Build: bo, Namespace: ns, PublishStatusAddress: []string{"198.18.0.1"}})

	waitTable(t, h, "Gateway routes", func(tb *routing.Table) bool {
		g, s := tb.HTTP.Hosts["good.example.com"], tb.HTTP.Hosts["secure.example.com"]
		return g != nil && s != nil && len(g.Routes) == 1 && g.Routes[0].Scope == routing.ScopePlain &&
			len(s.Routes) == 1 && s.Routes[0].Scope == routing.ScopeTLS && tb.TLS.Exact["secure.example.com"] != nil
	})
	eventually(t, 15*time.Second, "GatewayClass accepted with features", func() bool {
		var gc gatewayv1.GatewayClass
		if err := testClient.Get(ctx, types.NamespacedName{Name: className}, &gc); err != nil {
			t.Fatal(err)
		}
		return apimeta.IsStatusConditionTrue(gc.Status.Conditions, "Accepted") && len(gc.Status.SupportedFeatures) == len(translate.SupportedFeatures)
	})
	eventually(t, 15*time.Second, "Gateway status", func() bool {
		var gw gatewayv1.Gateway
		if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gw"}, &gw); err != nil {
			t.Fatal(err)
		}
		if !apimeta.IsStatusConditionTrue(gw.Status.Conditions, "Programmed") || len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != "198.18.0.1" {
			return false
		}
		want := map[string]int32{"http": 2, "https": 1, "other-port": 0}
		for _, l := range gw.Status.Listeners {
			if l.AttachedRoutes != want[string(l.Name)] {
				return false
			}
			acc := apimeta.FindStatusCondition(l.Conditions, "Accepted")
			if l.Name == "other-port" && (acc == nil || acc.Reason != string(gatewayv1.ListenerReasonPortUnavailable)) {
				return false
			}
		}
		return len(gw.Status.Listeners) == 3
	})
	for name, want := range map[string][2]string{
		"good":            {"Accepted", "Accepted"},
		"missing-backend": {"ResolvedRefs", "BackendNotFound"},
		"bad-section":     {"Accepted", "NoMatchingParent"},
	} {
		nn := types.NamespacedName{Namespace: ns, Name: name}
		eventually(t, 15*time.Second, name+" condition", func() bool {
			c := routeCond(t, nn, want[0])
			return c != nil && c.Reason == want[1]
		})
	}
	// The route without a backend answers 500 and the others still serve.
	tb := h.Load()
	if rt := tb.HTTP.Hosts["missing.example.com"]; rt == nil || len(rt.Routes[0].Backends) != 1 || rt.Routes[0].Backends[0].Backend != nil {
		t.Errorf("route with a missing backend: %+v", rt)
	}
	if eps := tb.HTTP.Hosts["good.example.com"].Routes[0].Backends[0].Backend.Endpoints; len(eps) != 1 || eps[0] != "198.18.0.5:8080" {
		t.Errorf("good route endpoints = %v", eps)
	}

	// A TLSPolicy attached to the HTTPS listener by targetRef serves its
	// host and reports the attachment in status.ancestors.
	mustCreate(t, &v1alpha1.TLSPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw-tls"}, Spec: v1alpha1.TLSPolicySpec{
		MinVersion: "1.3", TargetRefs: []v1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "Gateway", Name: "gw", SectionName: "https"}}}})
	waitTable(t, h, "listener policy", func(tb *routing.Table) bool {
		th := tb.TLS.Exact["secure.example.com"]
		return th != nil && th.Policy.Name == ns+"/gw-tls"
	})
	eventually(t, 15*time.Second, "TLSPolicy ancestors", func() bool {
		var p v1alpha1.TLSPolicy
		if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gw-tls"}, &p); err != nil {
			t.Fatal(err)
		}
		return len(p.Status.Ancestors) == 1 && apimeta.IsStatusConditionTrue(p.Status.Ancestors[0].Conditions, "Accepted") &&
			apimeta.IsStatusConditionTrue(p.Status.Conditions, "Accepted")
	})

	// A BackendTLSPolicy's CA ConfigMap is loaded on demand (no ConfigMap
	// informer holds data) and the Service's backend verifies TLS.
	caSecret := tlsSecret(t, ns, "unused", "web.internal")
	mustCreate(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-ca"}, Data: map[string]string{"ca.crt": string(caSecret.Data[corev1.TLSCertKey])}},
		&gatewayv1.BackendTLSPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-tls"}, Spec: gatewayv1.BackendTLSPolicySpec{
			TargetRefs: []gatewayv1.LocalPolicyTargetReferenceWithSectionName{{LocalPolicyTargetReference: gatewayv1.LocalPolicyTargetReference{Kind: "Service", Name: "web"}}},
			Validation: gatewayv1.BackendTLSPolicyValidation{Hostname: "web.internal", CACertificateRefs: []gatewayv1.LocalObjectReference{{Kind: "ConfigMap", Name: "web-ca"}}}}})
	waitTable(t, h, "verified upstream TLS", func(tb *routing.Table) bool {
		vh := tb.HTTP.Hosts["good.example.com"]
		if vh == nil || len(vh.Routes) == 0 {
			return false
		}
		b := vh.Routes[0].Backends[0].Backend
		return b != nil && b.TLS != nil && b.TLS.RootCAs != nil && b.TLS.ServerName == "web.internal"
	})
	eventually(t, 15*time.Second, "BackendTLSPolicy ancestors", func() bool {
		var p gatewayv1.BackendTLSPolicy
		if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-tls"}, &p); err != nil {
			t.Fatal(err)
		}
		return len(p.Status.Ancestors) == 1 && string(p.Status.Ancestors[0].AncestorRef.Name) == "gw" &&
			apimeta.IsStatusConditionTrue(p.Status.Ancestors[0].Conditions, "Accepted") &&
			apimeta.IsStatusConditionTrue(p.Status.Ancestors[0].Conditions, "ResolvedRefs")
	})

	// Invalid policies get their reasons and break nothing: a TLSPolicy
	// naming a missing listener, a BackendTLSPolicy without a valid CA
	// (its Service is then not used, never in the clear).
	mustCreate(t, &v1alpha1.TLSPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dangling"}, Spec: v1alpha1.TLSPolicySpec{
		TargetRefs: []v1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "Gateway", Name: "gw", SectionName: "nosuch"}}}},
		service(ns, "api", 9090), slice(ns, "api-1", "api", "http", 9090, "198.18.0.6"),
		hroute(ns, "api", "gw", "http", "api.example.com", "api", 9090),
		&gatewayv1.BackendTLSPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api-tls"}, Spec: gatewayv1.BackendTLSPolicySpec{
			TargetRefs: []gatewayv1.LocalPolicyTargetReferenceWithSectionName{{LocalPolicyTargetReference: gatewayv1.LocalPolicyTargetReference{Kind: "Service", Name: "api"}}},
			Validation: gatewayv1.BackendTLSPolicyValidation{Hostname: "api.internal", CACertificateRefs: []gatewayv1.LocalObjectReference{{Kind: "ConfigMap", Name: "no-such-ca"}}}}})
	eventually(t, 15*time.Second, "invalid policies' reasons", func() bool {
		var tp v1alpha1.TLSPolicy
		var bp gatewayv1.BackendTLSPolicy
		if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "dangling"}, &tp); err != nil {
			t.Fatal(err)
		}
		if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "api-tls"}, &bp); err != nil {
			t.Fatal(err)
		}
		if len(tp.Status.Ancestors) != 1 || len(bp.Status.Ancestors) != 1 {
			return false
		}
		tc := apimeta.FindStatusCondition(tp.Status.Ancestors[0].Conditions, "Accepted")
		bc := apimeta.FindStatusCondition(bp.Status.Ancestors[0].Conditions, "Accepted")
		return tc != nil && tc.Reason == string(gatewayv1.PolicyReasonTargetNotFound) &&
			bc != nil && bc.Reason == string(gatewayv1.BackendTLSPolicyReasonNoValidCACertificate)
	})
	tb = h.Load()
	if b := tb.HTTP.Hosts["api.example.com"].Routes[0].Backends[0].Backend; b == nil || len(b.Endpoints) != 0 {
		t.Errorf("Service under an invalid BackendTLSPolicy is used: %+v", b)
	}
	if th := tb.TLS.Exact["secure.example.com"]; th == nil || th.Policy.Name != ns+"/gw-tls" {
		t.Errorf("valid TLSPolicy lost: %+v", th)
	}
	if b := tb.HTTP.Hosts["good.example.com"].Routes[0].Backends[0].Backend; b == nil || b.TLS == nil || len(b.Endpoints) != 1 {
		t.Errorf("valid BackendTLSPolicy lost: %+v", b)
	}

	// A generation bump is observed, and another controller's parent
	// entry survives our writes.
	var r gatewayv1.HTTPRoute
	nn := types.NamespacedName{Namespace: ns, Name: "good"}
	if err := testClient.Get(ctx, nn, &r); err != nil {
		t.Fatal(err)
	}
	foreign := gatewayv1.RouteParentStatus{ParentRef: gatewayv1.ParentReference{Name: "elsewhere"}, ControllerName: "example.com/other",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now(), ObservedGeneration: r.Generation}}}
	r.Status.Parents = append(r.Status.Parents, foreign)
	if err := testClient.Status().Update(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if err := testClient.Get(ctx, nn, &r); err != nil {
		t.Fatal(err)
	}
	r.Spec.Hostnames = []gatewayv1.Hostname{"good2.example.com"}
	if err := testClient.Update(ctx, &r); err != nil {
		t.Fatal(err)
	}
	waitTable(t, h, "renamed host", func(tb *routing.Table) bool {
		return tb.HTTP.Hosts["good2.example.com"] != nil && tb.HTTP.Hosts["good.example.com"] == nil
	})
	eventually(t, 15*time.Second, "observedGeneration 2 and the foreign entry kept", func() bool {
		if err := testClient.Get(ctx, nn, &r); err != nil {
			t.Fatal(err)
		}
		ours, theirs := false, false
		for _, p := range r.Status.Parents {
			c := apimeta.FindStatusCondition(p.Conditions, "Accepted")
			switch p.ControllerName {
			case gatewayv1.GatewayController(bo.GatewayControllerName):
				ours = c != nil && c.ObservedGeneration == r.Generation && r.Generation == 2
			case "example.com/other":
				theirs = true
			}
		}
		return ours && theirs
	})
}

// TestRouteStatusWithDefaultControllerName runs the controller with the
// Gateway controller name left at its default, as `meshgate run` does:
// the status writer must recognise the parent entries the build writes
// under that name as its own, so a route keeps exactly one entry however
// many times its status is applied. (It did not: the writer compared with
// the unset name, kept every previous entry as another controller's and
// appended one per pass, up to the API's 32, rewriting the route each
// time; the conformance suite's TLSRouteInvalidNoMatchingListener saw it.)
func TestRouteStatusWithDefaultControllerName(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t) // GatewayControllerName unset
	className := "gwc-default-" + ns
	mustCreate(t,
		&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: className},
			Spec: gatewayv1.GatewayClassSpec{ControllerName: translate.DefaultGatewayControllerName}},
		service(ns, "web", 8080), slice(ns, "web-1", "web", "http", 8080, "198.18.0.5"),
		&gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw"}, Spec: gatewayv1.GatewaySpec{
			GatewayClassName: gatewayv1.ObjectName(className),
			Listeners:        []gatewayv1.Listener{{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80}}}},
		hroute(ns, "good", "gw", "http", "good.example.com", "web", 8080),
		hroute(ns, "bad-section", "gw", "nosuch", "bad.example.com", "web", 8080),
	)
	h := &routing.Holder{}
	var passes statusPasses
	startController(t, Options{Holder: h, Build: bo, Namespace: ns, OnStatusApplied: passes.record})
	for _, name := range []string{"good", "bad-section"} {
		nn := types.NamespacedName{Namespace: ns, Name: name}
		eventually(t, 15*time.Second, name+": Accepted written", func() bool { return routeCond(t, nn, "Accepted") != nil })
	}
	// More tables, each followed by a status pass over both routes.
	for i := range 3 {
		gen := h.Load().Generation
		mustCreate(t, slice(ns, fmt.Sprintf("web-%d", i+2), "web", "http", 8080, fmt.Sprintf("198.18.0.%d", 6+i)))
		tb := waitTable(t, h, "a newer table", func(tb *routing.Table) bool { return tb.Generation > gen })
		passes.wait(t, tb.Generation)
	}
	for _, name := range []string{"good", "bad-section"} {
		var r gatewayv1.HTTPRoute
		if err := testClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Status.Parents) != 1 {
			t.Errorf("%s: %d parent entries after repeated status passes, want 1: %+v", name, len(r.Status.Parents), r.Status.Parents)
		}
	}
}
