package sessionmesh

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
)

// BenchmarkLimiterMeshBytes measures what the request limiter costs the
// mesh: node 0 of three real nodes (mutual TLS, 25 ms reports) admits
// 10,000 requests a second for 2 s, spread over `keys` client keys, and
// the benchmark reports node 0's outbound mesh bytes a second (to both
// peers, TLS records included) beside the same nodes' idle traffic
// (heartbeats) measured first, in the same run. Run with -benchtime 1x:
// each iteration is 2 s of wall-clock load.
func BenchmarkLimiterMeshBytes(b *testing.B) {
	const rps, run = 10_000, 2 * time.Second
	nodes, _ := cluster(b, 3, Stateful)
	spec := ratelimit.Spec{Name: "ns/bench#rps", Rate: 1_000_000, Window: time.Second}
	lims := make([]*ratelimit.Limit, len(nodes))
	for i, n := range nodes {
		var err error
		if lims[i], err = n.Limiter().Limit(spec); err != nil {
			b.Fatal(err)
		}
	}
	out := func() uint64 { return nodes[0].Status().Mesh.BytesOut }
	idle := func() float64 {
		before := out()
		time.Sleep(run) // measuring idle traffic over a fixed time, not an assertion
		return float64(out()-before) / run.Seconds()
	}
	for _, keys := range []int{0, 1, 100, 1000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			for b.Loop() {
				if keys == 0 {
					b.ReportMetric(idle(), "meshB/s/node")
					continue
				}
				names := make([]string, keys)
				for i := range names {
					names[i] = fmt.Sprint("client-", keys, "-", i)
				}
				before, merged := out(), nodes[1].Limiter().Stats().Merged
				start := time.Now()
				// 10 requests a millisecond, on a wall-clock schedule.
				for i := 0; time.Since(start) < run; {
					for range rps / 1000 {
						lims[0].AllowString(names[i%keys])
						i++
					}
					if wait := time.Until(start.Add(time.Duration(i/(rps/1000)) * time.Millisecond)); wait > 0 {
						time.Sleep(wait) // pacing the load
					}
				}
				el := time.Since(start)
				b.ReportMetric(float64(out()-before)/el.Seconds(), "meshB/s/node")
				b.ReportMetric(float64(nodes[1].Limiter().Stats().Merged-merged)/el.Seconds(), "counts/s/peer")
			}
		})
	}
}
