package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/routing"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

func TestCRDValidation(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name    string
		spec    v1alpha1.TLSPolicySpec
		wantErr string // substring of the API error; "" = accepted
	}{
		{"empty", v1alpha1.TLSPolicySpec{}, ""},
		{"full", v1alpha1.TLSPolicySpec{
			Hosts: []string{"a.example.com", "*.example.org"}, MinVersion: "1.2", MaxVersion: "1.3",
			CipherSuites: []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
			Curves:       []string{"X25519MLKEM768", "X25519"},
			SessionResumption: v1alpha1.SessionResumption{Mode: v1alpha1.SessionResumptionTicketKeys,
				Lifetime: dur("10m"), TicketKeyRotation: dur("1h")},
		}, ""},
		{"tls13-only", v1alpha1.TLSPolicySpec{MinVersion: "1.3"}, ""},
		{"bad-version", v1alpha1.TLSPolicySpec{MinVersion: "1.1"}, "spec.minVersion"},
		{"min-above-max", v1alpha1.TLSPolicySpec{MinVersion: "1.3", MaxVersion: "1.2"}, "minVersion must not be above maxVersion"},
		{"unknown-cipher", v1alpha1.TLSPolicySpec{CipherSuites: []string{"TLS_RSA_WITH_RC4_128_SHA"}}, "spec.cipherSuites"},
		{"tls13-suite", v1alpha1.TLSPolicySpec{CipherSuites: []string{"TLS_AES_128_GCM_SHA256"}}, "spec.cipherSuites"},
		{"ciphers-with-tls13-only", v1alpha1.TLSPolicySpec{MinVersion: "1.3",
			CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}, "cipherSuites apply to TLS 1.2 only"},
		{"unknown-curve", v1alpha1.TLSPolicySpec{Curves: []string{"P-192"}}, "spec.curves"},
		{"bad-mode", v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{Mode: "Sometimes"}}, "spec.sessionResumption.mode"},
		{"lifetime-too-short", v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{Lifetime: dur("500ms")}}, "lifetime must be between 1s and 24h"},
		{"lifetime-too-long", v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{Lifetime: dur("25h")}}, "lifetime must be between 1s and 24h"},
		{"rotation-too-fast", v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{TicketKeyRotation: dur("30s")}}, "ticketKeyRotation must be at least 1m"},
		{"bad-host", v1alpha1.TLSPolicySpec{Hosts: []string{"Bad_Host"}}, "spec.hosts"},
		{"duplicate-curve", v1alpha1.TLSPolicySpec{Curves: []string{"X25519", "X25519"}}, "Duplicate value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &v1alpha1.TLSPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name}, Spec: tc.spec}
			err := testClient.Create(context.Background(), p)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestTLSPolicyStatus(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false))
	h := &routing.Holder{}
	var passes statusPasses
	startController(t, Options{Holder: h, Build: bo, Namespace: ns, OnStatusApplied: passes.record})
	ctx := context.Background()
	pol := &v1alpha1.TLSPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strict"},
		Spec: v1alpha1.TLSPolicySpec{Hosts: []string{"s.example.com"}, MinVersion: "1.3"}}
	mustCreate(t, pol, tlsSecret(t, ns, "s-tls", "s.example.com"),
		ingress(ns, "s", "s.example.com", "svc", &bo.IngressClass, withTLS("s-tls", "s.example.com")))

	waitConds := func(gen int64) v1alpha1.TLSPolicy {
		var got v1alpha1.TLSPolicy
		eventually(t, 15*time.Second, "Accepted and Programmed", func() bool {
			if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "strict"}, &got); err != nil {
				t.Fatal(err)
			}
			a := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAccepted)
			p := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionProgrammed)
			return a != nil && p != nil && a.Status == metav1.ConditionTrue && p.Status == metav1.ConditionTrue &&
				a.ObservedGeneration == gen && p.ObservedGeneration == gen
		})
		return got
	}
	got := waitConds(1)
	tb := waitTable(t, h, "policy on the host", func(tb *routing.Table) bool {
		th := tb.TLS.Exact["s.example.com"]
		return th != nil && th.Policy.Name == ns+"/strict"
	})
	if p := tb.TLS.Exact["s.example.com"].Policy; p.MinVersion != 0x0304 {
		t.Errorf("MinVersion = %#x, want TLS 1.3", p.MinVersion)
	}
	// Written once, by our field manager, and not again while unchanged.
	rv := got.ResourceVersion
	if !managedBy(got.ManagedFields, DefaultFieldManager, "status") {
		t.Errorf("status not applied by field manager %q: %+v", DefaultFieldManager, got.ManagedFields)
	}
	mustCreate(t, ingress(ns, "unrelated", "u.example.com", "svc", &bo.IngressClass))
	unrelated := waitTable(t, h, "unrelated host", func(tb *routing.Table) bool { return hasHost(tb, "u.example.com") })
	// The writer has applied that table's statuses: a rewrite of the
	// unchanged policy would have happened in this pass.
	passes.wait(t, unrelated.Generation)
	if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "strict"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != rv {
		t.Errorf("status rewritten without a change: resourceVersion %s → %s", rv, got.ResourceVersion)
	}
	// A spec change moves observedGeneration.
	got.Spec.MinVersion = "1.2"
	if err := testClient.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	waitConds(2)
}

func managedBy(mf []metav1.ManagedFieldsEntry, manager, subresource string) bool {
	for _, m := range mf {
		if m.Manager == manager && m.Subresource == subresource && m.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}
