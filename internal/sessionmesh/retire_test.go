package sessionmesh

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Revoking everything issued before T (POST /sessionmesh/revoke with
// issued_before, the answer to a key compromise) must reach TicketKeys
// tickets too: they have no record, so the keys created before T are
// retired on every replica, including the leader when the request reached
// a follower, and every ring goes on with a fresh key. Before, RevokeBefore
// only tombstoned store records: the old ticket kept resuming everywhere.
func TestRevokeBeforeRetiresTicketKeys(t *testing.T) {
	nodes, _ := cluster(t, 2, TicketKeys)
	leader, follower := nodes[0], nodes[1]
	waitFor(t, "one active ticket key", func() bool {
		return leader.hostRing().ring.Load().active.id == follower.hostRing().ring.Load().active.id
	})
	c := &client{cache: &fixedCache{}, max: tls.VersionTLS13, sni: "a.example.com"}
	c.mustConnect(t, follower.tlsAddr)
	old := ticketKeyID(t, identity(t, c.cache, ""))
	if !c.mustConnect(t, leader.tlsAddr) {
		t.Fatal("the ticket does not resume on the leader (sanity)")
	}

	follower.RevokeBefore(time.Now())
	holds := func(n *testNode, id uint64) bool {
		for _, k := range n.hostRing().ring.Load().keys {
			if k.id == id {
				return true
			}
		}
		return false
	}
	waitFor(t, "the old key retired on both nodes, one new active key", func() bool {
		a, b := leader.hostRing().ring.Load().active, follower.hostRing().ring.Load().active
		return !holds(leader, old) && !holds(follower, old) && a != nil && a.id == b.id && a.id != old
	})
	for _, n := range nodes {
		if c.mustConnect(t, n.tlsAddr) {
			t.Errorf("%s resumed a ticket sealed under a retired key", n.cfg.NodeName)
		}
	}
	fresh := &client{cache: &fixedCache{}, max: tls.VersionTLS13, sni: "a.example.com"}
	fresh.mustConnect(t, follower.tlsAddr)
	if !fresh.mustConnect(t, leader.tlsAddr) {
		t.Error("a ticket issued after the revocation does not resume across replicas")
	}
}

// A retirement time far ahead would retire every key the leader makes
// until then: it is refused and counted; one within the skew is applied.
func TestRetireFromPeerBounded(t *testing.T) {
	n, err := New(Config{NodeName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	h := (*handler)(n)
	ring, _ := n.tickets.get("")
	h.HandleTicketKeys("peer", wire.TicketKeys{RetiredBefore: time.Now().AddDate(1, 0, 0).UnixNano()})
	if ring.retiredBefore() != 0 || n.m.violationCounts()["peer"][violRetireFuture] != 1 {
		t.Fatalf("far-future retirement: retired %d, violations %v", ring.retiredBefore(), n.m.violationCounts())
	}
	old := ring.ring.Load().active.id
	h.HandleTicketKeys("peer", wire.TicketKeys{RetiredBefore: time.Now().UnixNano()})
	if st := ring.ring.Load(); st.active == nil || st.active.id == old {
		t.Fatal("a retirement from a peer left the old key active (or no key)")
	}
}
