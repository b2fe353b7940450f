package kube

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/translate"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// These tests need no API server: they drive the owner loop and the pure
// helpers directly.

func TestParseNamespacedName(t *testing.T) {
	cases := []struct {
		in      string
		want    types.NamespacedName
		wantErr bool
	}{
		{"ns/name", types.NamespacedName{Namespace: "ns", Name: "name"}, false},
		{"", types.NamespacedName{}, true},
		{"name", types.NamespacedName{}, true},
		{"/name", types.NamespacedName{}, true},
		{"ns/", types.NamespacedName{}, true},
		{"a/b/c", types.NamespacedName{}, true},
	}
	for _, tc := range cases {
		got, err := ParseNamespacedName(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseNamespacedName(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzParseNamespacedName(f *testing.F) {
	for _, s := range []string{"ns/name", "", "/", "a/b/c", "ns/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nn, err := ParseNamespacedName(s)
		if err != nil {
			return
		}
		if nn.Namespace == "" || nn.Name == "" || nn.String() != s {
			t.Fatalf("%q parsed to %#v", s, nn)
		}
	})
}

func TestOptionsValidate(t *testing.T) {
	h := &routing.Holder{}
	cases := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"minimal", Options{Holder: h}, true},
		{"no holder", Options{}, false},
		{"leader without namespace", Options{Holder: h, LeaderElect: true}, false},
		{"bad mesh service", Options{Holder: h, MeshService: "mesh"}, false},
		{"bad l4", Options{Holder: h, Build: translate.Options{L4ConfigMap: "x"}}, false},
		{"full", Options{Holder: h, LeaderElect: true, LeaderElectionNamespace: "ns",
			MeshService: "ns/mesh", MeshCASecret: "ns/ca", PublishService: "ns/lb"}, true},
	}
	for _, tc := range cases {
		if err := tc.opts.withDefaults().validate(); (err == nil) != tc.ok {
			t.Errorf("%s: validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestPeersFrom(t *testing.T) {
	mk := func(port string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			Ports:     []discoveryv1.EndpointPort{{Name: ptr.To(port), Port: ptr.To[int32](7946)}},
			Endpoints: eps,
		}
	}
	ready := func(addr string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
	}
	cases := []struct {
		name   string
		slices map[string]*discoveryv1.EndpointSlice
		want   []string
	}{
		{"none", nil, []string{}},
		{"two slices, dedup and sort", map[string]*discoveryv1.EndpointSlice{
			"a": mk("mesh", ready("10.0.0.2"), ready("10.0.0.1")),
			"b": mk("mesh", ready("10.0.0.1"), discoveryv1.Endpoint{Addresses: []string{"10.0.0.3"}}),
		}, []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"}},
		{"not ready skipped", map[string]*discoveryv1.EndpointSlice{
			"a": mk("mesh", discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}),
		}, []string{}},
		{"other port name", map[string]*discoveryv1.EndpointSlice{"a": mk("http", ready("10.0.0.1"))}, []string{}},
		{"ipv6 bracketed", map[string]*discoveryv1.EndpointSlice{"a": mk("mesh", ready("fd00::1"))}, []string{"[fd00::1]:7946"}},
	}
	for _, tc := range cases {
		if got := peersFrom(tc.slices, "mesh"); !slices.Equal(got, tc.want) {
			t.Errorf("%s: peersFrom = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPeerStreamLatestWins(t *testing.T) {
	p := newPeerStream()
	p.publish([]string{"a:1"})
	p.publish([]string{"a:1"}) // unchanged: not resent
	p.publish([]string{"a:1", "b:1"})
	if got := <-p.ch; !slices.Equal(got, []string{"a:1", "b:1"}) {
		t.Fatalf("got %v, want the newest set", got)
	}
	select {
	case got := <-p.ch:
		t.Fatalf("unexpected second set %v", got)
	default:
	}
	p.publish(nil)
	if got := <-p.ch; got == nil || len(got) != 0 {
		t.Fatalf("nil set sent as %#v, want empty non-nil", got)
	}
}

func TestPolicyConditions(t *testing.T) {
	old := metav1.NewTime(time.Unix(1000, 0))
	cur := []metav1.Condition{
		{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAccepted,
			Message: "the policy is valid", ObservedGeneration: 1, LastTransitionTime: old},
		{Type: "Other", Status: metav1.ConditionTrue, Reason: "X", LastTransitionTime: old},
	}
	got := policyConditions(cur, policyStatus{generation: 1, accepted: true})
	if a := got[0]; a.LastTransitionTime != old {
		t.Errorf("unchanged Accepted lost its transition time: %v", a.LastTransitionTime)
	}
	if len(got) != 3 {
		t.Fatalf("got %d conditions, want Accepted, Other, Programmed", len(got))
	}
	bad := policyConditions(got, policyStatus{generation: 2, accepted: false, message: "nope"})
	if conditionsEqual(bad, got) {
		t.Fatal("an invalid policy produced the same conditions")
	}
	if bad[0].Status != metav1.ConditionFalse || bad[0].Message != "nope" || bad[0].ObservedGeneration != 2 {
		t.Errorf("Accepted = %+v", bad[0])
	}
}

// loopHarness runs the owner loop without informers: the test sends events
// and watches publishes.
type loopHarness struct {
	h      *handler
	mu     sync.Mutex
	builds int
}

func newLoopHarness(t *testing.T) *loopHarness {
	lh := &loopHarness{}
	opts := Options{Holder: &routing.Holder{}, MaxDelay: 100 * time.Millisecond, HoldOff: 10 * time.Millisecond,
		OnPublish: func(*routing.Table, []translate.Problem, time.Time) {
			lh.mu.Lock()
			lh.builds++
			lh.mu.Unlock()
		}}.withDefaults()
	lh.h = newHandler(opts, nil, nil, nil, newStatusWriter(opts, nil, nil), newPeerStream())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = lh.h.loop(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	lh.h.send(event{op: opSynced, at: time.Now()})
	<-lh.h.synced
	return lh
}

func (lh *loopHarness) count() int {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	return lh.builds
}

func svcEvent(rv int) event {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", ResourceVersion: strconv.Itoa(rv)},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	return event{op: opUpsert, obj: s, at: time.Now()}
}

// TestDebounceCoalescesBursts sends a burst of 200 changes followed by an
// Ingress whose host marks the end: events are applied in order, so the
// table holding the marker holds the whole burst, and once it is published
// nothing of the burst is left to build. The hold-off and max delay
// themselves are tested in internal/source/debounce.
func TestDebounceCoalescesBursts(t *testing.T) {
	lh := newLoopHarness(t)
	before := lh.count()
	for i := range 200 {
		lh.h.send(svcEvent(i + 1))
	}
	bo := lh.h.opts.Build
	lh.h.send(event{op: opUpsert, obj: ingressClass(bo.IngressClass, bo.ControllerName, false), at: time.Now()})
	lh.h.send(event{op: opUpsert, obj: ingress("ns", "marker", "marker.example.com", "s", &bo.IngressClass), at: time.Now()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lh.h.opts.Holder.Wait(ctx, func(tb *routing.Table) bool { return hasHost(tb, "marker.example.com") }); err != nil {
		t.Fatalf("the burst's table was not published: %v", err)
	}
	// Sending the burst takes microseconds, far less than MaxDelay (100 ms),
	// so it fits one debounce period, two if a build started in between;
	// more only if applying 202 events took over 300 ms. No debounce at
	// all would mean 202 builds.
	if n := lh.count() - before; n > 5 {
		t.Errorf("a burst of 202 events caused %d builds; want a handful", n)
	}
}
