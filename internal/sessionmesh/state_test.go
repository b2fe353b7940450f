package sessionmesh

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
)

func withZones(c *Config) { c.Zones = []clusterstate.ZoneConfig{{Name: "deny"}} }

// A write on one node reaches every peer; a deletion too; and a node that
// joins later has the zone's entries by the time it is Ready.
func TestZonesReplicateAndJoinerHasThem(t *testing.T) {
	nodes, ca := clusterWith(t, 3, Stateful, withZones)
	if _, err := nodes[0].State().Put("deny", "192.0.2.1", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].State().Put("deny", "198.51.100.0/24", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	has := func(n *testNode, key string) bool { _, ok, _ := n.State().Get("deny", key); return ok }
	waitFor(t, "both entries on every node", func() bool {
		for _, n := range nodes {
			if !has(n, "192.0.2.1") || !has(n, "198.51.100.0/24") {
				return false
			}
		}
		return true
	})
	if _, err := nodes[2].State().Delete("deny", "192.0.2.1", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deletion on every node", func() bool {
		for _, n := range nodes {
			if has(n, "192.0.2.1") {
				return false
			}
		}
		return true
	})

	// The zone_sync figures of the first node: two writes seen, one of
	// them deleted since, both peers able to receive zones.
	mf := gather(t, nodes[0])
	for name, want := range map[string]float64{
		`meshgate_sessionmesh_zone_records{zone="deny"}`:    1,
		`meshgate_sessionmesh_zone_tombstones{zone="deny"}`: 1,
		`meshgate_sessionmesh_zone_nodes_online`:            2,
		`meshgate_sessionmesh_zone_drops_total`:             0,
	} {
		if got, ok := mf[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}

	joiner := newTestNode(t, ca, "node-9", Stateful, func(c *Config) {
		withZones(c)
		c.MeshTuning = func(mc *mesh.Config) { fastMesh(mc); mc.InitialSync = time.Minute }
	})
	joiner.feed.ch <- []string{nodes[0].MeshAddr()}
	waitFor(t, "joiner ready", func() bool { return joiner.Ready() == nil })
	if !has(joiner, "198.51.100.0/24") || has(joiner, "192.0.2.1") {
		t.Fatal("joiner ready without the zone's entries (or with the deleted one)")
	}
}

// gather returns the node's metrics as "name{labels}" → value.
func gather(t *testing.T, n *testNode) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(n.m); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
				}
				name += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
