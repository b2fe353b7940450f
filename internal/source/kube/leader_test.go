package kube

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// startCancelable is startController with its own cancel, for handover.
// The returned channel is closed when Start returns.
func startCancelable(t *testing.T, opts Options) (*Controller, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	c, err := New(testCfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Start(ctx); err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("controller did not stop")
		}
	})
	return c, cancel, done
}

func TestLeaderElectionHandover(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false))
	base := Options{Build: bo, Namespace: ns, LeaderElect: true, LeaderElectionNamespace: ns,
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
		MeshCASecret: ns + "/mesh-ca"}
	optsA, optsB := base, base
	optsA.Holder, optsB.Holder = &routing.Holder{}, &routing.Holder{}
	optsA.PublishStatusAddress = []string{"192.0.2.1"}
	optsB.PublishStatusAddress = []string{"192.0.2.2"}

	a, cancelA, doneA := startCancelable(t, optsA)
	eventually(t, 20*time.Second, "A elected", func() bool { return isClosed(a.Elected()) })
	b, _, _ := startCancelable(t, optsB)
	<-b.Synced() // followers build tables too

	mustCreate(t, ingress(ns, "web", "a.example.com", "svc", &bo.IngressClass))
	waitTable(t, optsB.Holder, "follower's table", func(tb *routing.Table) bool { return hasHost(tb, "a.example.com") })
	statusIP := func() string {
		var ing networkingv1.Ingress
		if err := testClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web"}, &ing); err != nil {
			t.Fatal(err)
		}
		if lb := ing.Status.LoadBalancer.Ingress; len(lb) == 1 {
			return lb[0].IP
		}
		return ""
	}
	eventually(t, 15*time.Second, "leader A writes status", func() bool { return statusIP() == "192.0.2.1" })
	if isClosed(b.Elected()) {
		t.Fatal("B elected while A leads")
	}
	caA, err := a.MeshCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	cancelA() // releases the Lease
	select {
	case <-doneA:
	case <-time.After(15 * time.Second):
		t.Fatal("A did not stop")
	}
	start := time.Now()
	eventually(t, 20*time.Second, "B elected", func() bool { return isClosed(b.Elected()) })
	t.Logf("handover took %v", time.Since(start))
	eventually(t, 15*time.Second, "leader B writes status", func() bool { return statusIP() == "192.0.2.2" })

	caB, err := b.MeshCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if caA.Fingerprint() != caB.Fingerprint() {
		t.Errorf("replicas see different mesh CAs: %s vs %s", caA.Fingerprint(), caB.Fingerprint())
	}
}

func TestMeshCACreatedOnce(t *testing.T) {
	ns := newNamespace(t)
	c := startController(t, Options{Build: testBuild(t), Namespace: ns, MeshCASecret: ns + "/mesh-ca"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ca, err := c.MeshCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "mesh-ca"}, &s); err != nil {
		t.Fatal(err)
	}
	if s.Type != MeshCASecretType || len(s.Data[pki.KeyFile]) == 0 {
		t.Fatalf("secret type %q keys %d, want %q with %s", s.Type, len(s.Data), MeshCASecretType, pki.KeyFile)
	}
	// A second replica reuses it.
	c2 := startController(t, Options{Build: testBuild(t), Namespace: ns, MeshCASecret: ns + "/mesh-ca"})
	ca2, err := c2.MeshCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Fingerprint() != ca2.Fingerprint() {
		t.Fatal("second replica generated its own CA")
	}
}

func TestPeerDiscovery(t *testing.T) {
	ns := newNamespace(t)
	c := startController(t, Options{Build: testBuild(t), Namespace: ns, MeshService: ns + "/mesh"})
	next := func(want []string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case got := <-c.Peers():
				if slices.Equal(got, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no peer set %v", want)
			}
		}
	}
	next([]string{}) // no slice yet
	es := slice(ns, "mesh-1", "mesh", "mesh", 7946, "198.18.1.1", "198.18.1.2")
	es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr.To("metrics"), Port: ptr.To[int32](9101)})
	mustCreate(t, es)
	next([]string{"198.18.1.1:7946", "198.18.1.2:7946"})

	es.Endpoints[1].Conditions.Ready = ptr.To(false)
	es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.18.1.3"}})
	if err := testClient.Update(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	next([]string{"198.18.1.1:7946", "198.18.1.3:7946"})

	// Slices of other Services are ignored; deleting ours empties the set.
	mustCreate(t, slice(ns, "other-1", "other", "mesh", 7946, "198.18.1.9"))
	if err := testClient.Delete(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	next([]string{})
}
