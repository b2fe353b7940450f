package sessionmesh

import (
	"context"
	"crypto/tls"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

func recordsEverywhere(nodes []*testNode, n int) func() bool {
	return func() bool {
		for _, tn := range nodes {
			if tn.store.Len() < n {
				return false
			}
		}
		return true
	}
}

func TestResumeAcrossNodes(t *testing.T) {
	for _, mode := range []Mode{Stateful, TicketKeys} {
		t.Run(mode.String(), func(t *testing.T) {
			nodes, _ := cluster(t, 3, mode)
			if mode == TicketKeys {
				waitFor(t, "one active ticket key", func() bool {
					id := nodes[0].hostRing().ring.Load().active.id
					for _, n := range nodes {
						if n.hostRing().ring.Load().active.id != id {
							return false
						}
					}
					return true
				})
			}
			for _, v := range versions {
				t.Run(v.name, func(t *testing.T) {
					c := newClient(v.v)
					if c.mustConnect(t, nodes[0].tlsAddr) {
						t.Fatal("first handshake resumed")
					}
					for _, tn := range nodes {
						if !c.mustConnect(t, tn.tlsAddr) {
							t.Fatalf("no resumption on %s", tn.cfg.NodeName)
						}
					}
				})
			}
			hits := nodes[1].Status().Hits
			if hits["1.2"] == 0 || hits["1.3"] == 0 {
				t.Fatalf("hits not counted: %v", hits)
			}
		})
	}
}

func TestBindingMismatchDoesNotResume(t *testing.T) {
	for _, mode := range []Mode{Stateful, TicketKeys} {
		for _, v := range versions {
			t.Run(mode.String()+"/"+v.name, func(t *testing.T) {
				ca, _ := newCA(t)
				a := newTestNode(t, ca, "solo", mode, func(c *Config) { c.ListenAddr = "" })
				c := &client{cache: &fixedCache{}, max: v.v, sni: "a.example.com"}
				c.mustConnect(t, a.tlsAddr)
				if !c.mustConnect(t, a.tlsAddr) {
					t.Fatal("same name did not resume")
				}
				c.sni = "b.example.com" // same certificate, other virtual host
				if c.mustConnect(t, a.tlsAddr) {
					t.Fatal("session resumed on another SNI name")
				}
				if a.Status().Misses["binding_mismatch"] == 0 {
					t.Fatal("binding mismatch not counted")
				}
			})
		}
	}
}

func TestRevocation(t *testing.T) {
	nodes, _ := cluster(t, 3, Stateful)
	c := newClient(tls.VersionTLS12)
	c.mustConnect(t, nodes[0].tlsAddr)
	waitFor(t, "replication", recordsEverywhere(nodes, 1))
	if !nodes[0].Revoke(identity(t, c.cache, "a.example.com")) {
		t.Fatal("Revoke refused a valid id")
	}
	waitFor(t, "revocation everywhere", func() bool {
		for _, tn := range nodes {
			if tn.store.Len() != 0 {
				return false
			}
		}
		return true
	})
	if c.mustConnect(t, nodes[2].tlsAddr) {
		t.Fatal("revoked session resumed")
	}
	if nodes[2].Revoke([]byte("garbage")) {
		t.Fatal("Revoke accepted garbage")
	}
}

func TestKilledNodeLosesNothing(t *testing.T) {
	nodes, _ := cluster(t, 3, Stateful)
	var clients []*client
	for i := 0; i < 20; i++ {
		c := newClient(versions[i%2].v)
		c.mustConnect(t, nodes[0].tlsAddr)
		clients = append(clients, c)
	}
	waitFor(t, "replication", recordsEverywhere(nodes, 20))
	nodes[0].Kill()
	nodes[0].tlsLn.Close()
	for i, c := range clients {
		if !c.mustConnect(t, nodes[1+i%2].tlsAddr) {
			t.Fatalf("client %d lost its session", i)
		}
	}
	waitFor(t, "dead peer detected", func() bool { return len(nodes[1].mesh.OnlineNames()) == 1 })
}

func TestRestartedNodeGetsSnapshot(t *testing.T) {
	nodes, ca := cluster(t, 3, Stateful)
	var clients []*client
	for i := 0; i < 30; i++ {
		c := newClient(versions[i%2].v)
		c.mustConnect(t, nodes[0].tlsAddr)
		clients = append(clients, c)
	}
	waitFor(t, "replication", recordsEverywhere(nodes, 30))
	// node-2 restarts with an empty store; node-0 (the issuer) is gone, so
	// only the snapshot from node-1 can give it the sessions.
	nodes[2].stop()
	nodes[0].Kill()
	fresh := newTestNode(t, ca, "node-2", Stateful, nil)
	if fresh.Ready() == nil {
		t.Fatal("ready before any peer set")
	}
	fresh.feed.ch <- []string{nodes[1].MeshAddr(), fresh.MeshAddr()}
	waitFor(t, "snapshot", func() bool { return fresh.Ready() == nil })
	if fresh.store.Len() < 30 {
		t.Fatalf("snapshot brought %d records", fresh.store.Len())
	}
	for i, c := range clients {
		if !c.mustConnect(t, fresh.tlsAddr) {
			t.Fatalf("client %d did not resume on the restarted node", i)
		}
	}
}

func TestFirstReplicaBecomesReady(t *testing.T) {
	ca, _ := newCA(t)
	n := newTestNode(t, ca, "first", Stateful, nil)
	n.feed.ch <- []string{"127.0.0.1:1"} // nobody listens there
	waitFor(t, "ready alone", func() bool { return n.Ready() == nil })
}

// TestZeroThinkTime issues a session on one node and at once resumes it on
// another, racing replication. The issuer writes a record to an idle peer
// connection inline, so replication usually wins and the point lookup
// (TestPointLookupCoversReplicationLag) covers the rest. The ≥ 99.9 %
// target is measured by BenchmarkZeroThinkTime (timing-dependent rates stay
// out of unit tests); the 98 % here only catches a broken path: on an
// unloaded loopback mesh every resumption either finds the record or gets
// it from the issuer within LookupTimeout.
func TestZeroThinkTime(t *testing.T) {
	nodes, _ := cluster(t, 3, Stateful)
	const rounds = 300
	resumed := 0
	for i := 0; i < rounds; i++ {
		c := newClient(versions[i%2].v)
		c.mustConnect(t, nodes[i%3].tlsAddr)
		if c.mustConnect(t, nodes[(i+1)%3].tlsAddr) {
			resumed++
		}
	}
	for _, tn := range nodes {
		st := tn.Status()
		t.Logf("%s misses %v remote lookups/hits %v", tn.cfg.NodeName, st.Misses, st.Remote)
	}
	if float64(resumed) < 0.98*rounds {
		t.Fatalf("only %d/%d resumed", resumed, rounds)
	}
}

// heldInserts is a mesh handler that keeps the records peers replicate
// from the node it wraps, as if replication were slow without bound; every
// other message (point lookups, snapshots, revocations) passes through.
type heldInserts struct {
	mesh.Handler
	held atomic.Int64
}

func (h *heldInserts) HandleInsert(from string, recs []store.Record) {
	h.held.Add(int64(len(recs)))
}

// TestPointLookupCoversReplicationLag resumes sessions on a node that never
// receives their replicated records: each resumption must ask the issuer,
// get the record from it within LookupTimeout.
func TestPointLookupCoversReplicationLag(t *testing.T) {
	hold := &heldInserts{}
	nodes, _ := clusterWith(t, 3, Stateful, func(c *Config) {
		if c.NodeName != "node-1" {
			return
		}
		tune := c.MeshTuning
		c.MeshTuning = func(mc *mesh.Config) {
			tune(mc)
			hold.Handler = mc.Handler
			mc.Handler = hold
		}
	})
	const sessions = 20
	for i := 0; i < sessions; i++ {
		c := newClient(versions[i%2].v)
		c.mustConnect(t, nodes[0].tlsAddr)
		if !c.mustConnect(t, nodes[1].tlsAddr) {
			t.Fatalf("session %d did not resume on node-1", i)
		}
	}
	st := nodes[1].Status()
	if st.Remote[1] < sessions {
		t.Errorf("node-1 resumed through %d point lookups (%d asked), want ≥ %d", st.Remote[1], st.Remote[0], sessions)
	}
	// The records did reach node-1's mesh, and were held there.
	waitFor(t, "node-1's mesh received the inserts", func() bool { return hold.held.Load() >= sessions })
}

func TestOffMode(t *testing.T) {
	ca, _ := newCA(t)
	n := newTestNode(t, ca, "off", Off, func(c *Config) { c.ListenAddr = "" })
	c := newClient(tls.VersionTLS13)
	c.mustConnect(t, n.tlsAddr)
	if c.mustConnect(t, n.tlsAddr) {
		t.Fatal("resumed with sessions off")
	}
	if st := n.Status(); st.Full["1.3"] != 2 {
		t.Fatalf("full handshakes %v", st.Full)
	}
}

func TestLocalOnlyNode(t *testing.T) {
	n, err := New(Config{NodeName: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Ready() != nil || n.MeshAddr() != "" {
		t.Fatal("local-only node not ready")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := New(Config{NodeName: "x", ListenAddr: "127.0.0.1:0"}); err == nil {
		t.Fatal("mesh without CA accepted")
	}
}

// Each way of not finding a session counts as its own miss reason: an id
// whose issuer is online but has no record is a remote miss; one whose
// issuer is not in the mesh is an unknown id; a revoked one is revoked.
func TestMissReasons(t *testing.T) {
	nodes, _ := cluster(t, 2, Stateful)
	a, b := nodes[0], nodes[1]
	var k store.Key
	k[0] = 1
	now := time.Now()
	for _, tc := range []struct {
		name   string
		origin uint64
		prep   func()
		want   int
	}{
		{"issuer asked, no record", a.id, nil, missRemote},
		{"issuer not in the mesh", mesh.NodeID("nobody"), nil, missUnknown},
		{"revoked here", b.id, func() { b.store.Delete(k, now.Add(time.Minute).UnixNano(), now) }, missRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prep != nil {
				tc.prep()
			}
			if _, miss := b.lookup(tc.origin, k, now); miss != tc.want {
				t.Fatalf("miss %s, want %s", missNames[miss], missNames[tc.want])
			}
		})
	}
}
