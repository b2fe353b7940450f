package sessionmesh

import (
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
)

// Three nodes enforce one cluster-wide limit: what node 0 admitted reaches
// the others through the mesh, so they refuse the key once the cluster's
// count is at the rate.
func TestLimitAcrossNodes(t *testing.T) {
	nodes, _ := cluster(t, 3, Stateful)
	spec := ratelimit.Spec{Name: "ns/ing#rpm", Rate: 50, Window: time.Minute}
	lims := make([]*ratelimit.Limit, len(nodes))
	for i, n := range nodes {
		var err error
		if lims[i], err = n.Limiter().Limit(spec); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		if !lims[0].AllowString("client").OK {
			t.Fatalf("request %d refused under the rate", i)
		}
	}
	for i := 1; i < 3; i++ {
		waitFor(t, "node 0's counts at the other nodes", func() bool { return nodes[i].Limiter().Stats().Merged > 0 })
		// Without node 0's counts node i would admit the whole rate (50)
		// itself; with them, at most what a report cut in two left out.
		admitted := 0
		for lims[i].AllowString("client").OK && admitted < 100 {
			admitted++
		}
		if admitted >= 50 {
			t.Errorf("node %d admitted %d more: node 0's counts did not count", i, admitted)
		}
	}
	if d := lims[1].AllowString("client"); d.OK || d.RetryAfter < time.Second {
		t.Errorf("node 1 decision %+v, want a refusal with Retry-After", d)
	}
	if !lims[2].AllowString("other").OK {
		t.Error("another key was refused")
	}
}
