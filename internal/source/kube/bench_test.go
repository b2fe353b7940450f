package kube

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/translate"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// BenchmarkChangeToServing measures how long an EndpointSlice update takes
// from the client's Update call to a published table containing it: API
// server write, watch delivery, debounce hold-off (10 ms) and build. It
// reports p50/p99 of that end-to-end latency and of the controller's own
// share (first event received → table stored). Target: p99 < 100 ms.
func BenchmarkChangeToServing(b *testing.B) {
	ns := newNamespace(b)
	bo := translate.Options{ControllerName: "meshgate.io/bench", IngressClass: "mg-bench"}
	mustCreate(b, ingressClass(bo.IngressClass, bo.ControllerName, false))
	b.Cleanup(func() {
		_ = testClient.Delete(context.Background(), ingressClass(bo.IngressClass, bo.ControllerName, false))
	})
	// 50 Ingresses and Services so the build is not trivially empty.
	for i := range 50 {
		svc := fmt.Sprintf("svc%d", i)
		mustCreate(b, service(ns, svc, 80), slice(ns, svc+"-1", svc, "http", 8080, "198.18.2.1"),
			ingress(ns, svc, svc+".example.com", svc, &bo.IngressClass))
	}
	published := make(chan time.Time, 64)
	h := &routing.Holder{}
	startController(b, Options{Holder: h, Build: bo, Namespace: ns,
		OnPublish: func(_ *routing.Table, _ []translate.Problem, changedAt time.Time) {
			select {
			case published <- changedAt:
			default:
			}
		}})
	waitTable(b, h, "all hosts", func(t *routing.Table) bool { return len(t.HTTP.Hosts) == 50 })

	es := slice(ns, "svc0-1", "svc0", "http", 8080)
	ctx := context.Background()
	total := make([]time.Duration, 0, b.N)
	inner := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		addr := fmt.Sprintf("198.18.3.%d", i%250+1)
		want := addr + ":8080"
		if err := testClient.Get(ctx, keyOf(es), es); err != nil {
			b.Fatal(err)
		}
		es.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{addr}}}
		for len(published) > 0 {
			<-published
		}
		start := time.Now()
		if err := testClient.Update(ctx, es); err != nil {
			b.Fatal(err)
		}
		deadline := time.After(10 * time.Second)
		for !slices.Equal(endpointsOf(h.Load(), "svc0.example.com"), []string{want}) {
			select {
			case changedAt := <-published:
				if !changedAt.IsZero() {
					inner = append(inner, time.Since(changedAt))
				}
			case <-deadline:
				b.Fatalf("update %d not served within 10s", i)
			}
		}
		total = append(total, time.Since(start))
	}
	b.StopTimer()
	report(b, "e2e", total)
	report(b, "ctrl", inner)
}

func report(b *testing.B, name string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), name+"-p50-ms")
	b.ReportMetric(q(0.99), name+"-p99-ms")
}
