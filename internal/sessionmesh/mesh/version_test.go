package mesh

import (
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// memKV is a KVHandler keeping the last entry per zone and key.
type memKV struct {
	mu sync.Mutex
	m  map[string]clusterstate.Entry
}

func newMemKV() *memKV { return &memKV{m: make(map[string]clusterstate.Entry)} }

func (h *memKV) HandleKV(_ string, es []clusterstate.Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range es {
		h.m[e.Zone+"/"+e.Key] = e
	}
}

func (h *memKV) RangeKV(fn func(clusterstate.Entry) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.m {
		if !fn(e) {
			return
		}
	}
}

func (h *memKV) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

func withKV(kv *memKV, maxVersion uint16) func(*Config) {
	return func(c *Config) { c.KV, c.MaxVersion = kv, maxVersion }
}

func peerVersion(m *testMesh) uint16 {
	for _, p := range m.Status().Peers {
		if p.State == StateOnline {
			return p.Version
		}
	}
	return 0
}

// A node pinned to version 1 (the protocol before record kinds) and a
// current node agree on version 1 and replicate ticket state both ways; the
// current node leaves out the session-ID records a version 1 peer cannot
// tell from ticket state.
func TestVersion1Peer(t *testing.T) {
	ca, _ := pki.NewCA("t")
	pa, pb := make(chanPeers, 1), make(chanPeers, 1)
	old := startMesh(t, ca, "old", pa, func(c *Config) { c.MaxVersion = 1 })
	cur := startMesh(t, ca, "cur", pb, nil)
	pa <- []string{cur.Addr()}
	pb <- []string{old.Addr()}
	waitFor(t, "both online", func() bool { return peerVersion(old) != 0 && peerVersion(cur) != 0 })
	if v, w := peerVersion(old), peerVersion(cur); v != 1 || w != 1 {
		t.Fatalf("negotiated %d and %d, want 1", v, w)
	}
	sid := record(1)
	sid.Kind = store.KindTLS12SessionID
	tls := record(2)
	cur.Insert(sid)
	cur.Insert(tls)
	waitFor(t, "ticket record on the old node", func() bool { return old.h.s.Len() == 1 })
	if _, st := old.h.s.Get(tls.Key, time.Now()); st != store.Found {
		t.Fatal("the old node holds the session-ID record instead of the ticket record")
	}
	back := record(3)
	old.Insert(back)
	waitFor(t, "old node's record on the current node", func() bool {
		_, st := cur.h.s.Get(back.Key, time.Now())
		return st == store.Found
	})
}

// Key-value entries go to version 3 peers only: a version 2 peer never
// receives them (the publisher counts them as not deliverable), a version 3
// peer does.
func TestKVOnlyToPeersThatAnnounceIt(t *testing.T) {
	ca, _ := pki.NewCA("t")
	kvA, kvB, kvC := newMemKV(), newMemKV(), newMemKV()
	pa := make(chanPeers, 1)
	b := startMesh(t, ca, "b", nil, withKV(kvB, 0))
	c := startMesh(t, ca, "c", nil, withKV(kvC, 2))
	a := startMesh(t, ca, "a", pa, withKV(kvA, 0))
	pa <- []string{b.Addr(), c.Addr()}
	waitFor(t, "a online to both", func() bool { return len(a.OnlineNames()) == 2 })
	a.PublishKV(clusterstate.Entry{Zone: "deny", Key: "192.0.2.1", Version: 1, Origin: 1, Expires: 1 << 62})
	waitFor(t, "entry at b and counted as undeliverable for c", func() bool {
		return kvB.len() == 1 && a.Status().KVDrops == 1
	})
	if kvC.len() != 0 {
		t.Fatal("a version 2 peer received a key-value entry")
	}
	for _, p := range a.Status().Peers {
		want := wire.MaxVersion
		if p.Name == "c" {
			want = 2
		}
		if p.Version != want {
			t.Errorf("peer %s at version %d, want %d", p.Name, p.Version, want)
		}
	}
}

// A joining node has every key-value entry of the peer it syncs from by
// the time it reports synced: the entries stream before SnapshotEnd.
func TestSnapshotCarriesKV(t *testing.T) {
	ca, _ := pki.NewCA("t")
	kvA, kvB := newMemKV(), newMemKV()
	const n = 3000 // several chunks at the default BatchBytes
	for i := range n {
		kvA.HandleKV("", []clusterstate.Entry{{Zone: "z", Key: string(rune('a'+i%26)) + string(rune(i)),
			Value: make([]byte, 64), Version: int64(i), Expires: 1 << 62}})
	}
	if kvA.len() != n {
		t.Fatalf("fixture: %d entries", kvA.len())
	}
	a := startMesh(t, ca, "a", nil, withKV(kvA, 0))
	// A long initial-sync wait: b is synced by the snapshot, not by giving up.
	b := startMesh(t, ca, "b", StaticPeers{a.Addr()}, func(c *Config) {
		withKV(kvB, 0)(c)
		c.InitialSync = time.Minute
	})
	<-b.SyncedC()
	if got := kvB.len(); got != n {
		t.Fatalf("synced with %d of %d entries", got, n)
	}
}

// Ticket key rings other than "" go to peers of version 4 on only: a
// version 3 peer keeps one ring, which another ring's keys would replace.
func TestTicketKeyRingsOnlyToPeersThatAnnounceThem(t *testing.T) {
	ca, _ := pki.NewCA("t")
	pa := make(chanPeers, 1)
	cur := startMesh(t, ca, "cur", nil, nil)
	old := startMesh(t, ca, "old", nil, func(c *Config) { c.MaxVersion = wire.RingsSince - 1 })
	a := startMesh(t, ca, "a", pa, nil)
	pa <- []string{cur.Addr(), old.Addr()}
	waitFor(t, "a online to both", func() bool { return len(a.OnlineNames()) == 2 })
	key := []wire.TicketKey{{Created: 1, Generator: "a"}}
	a.BroadcastTicketKeys(wire.TicketKeys{Ring: "tenant/p", Keys: key})
	a.BroadcastTicketKeys(wire.TicketKeys{Ring: "", Keys: key})
	rings := func(m *testMesh) []string {
		m.h.mu.Lock()
		defer m.h.mu.Unlock()
		return append([]string(nil), m.h.rings...)
	}
	has := func(rs []string, r string) bool {
		for _, x := range rs {
			if x == r {
				return true
			}
		}
		return false
	}
	waitFor(t, "both rings at the current peer, the default ring at the old one", func() bool {
		return has(rings(cur), "tenant/p") && has(rings(cur), "") && has(rings(old), "")
	})
	if has(rings(old), "tenant/p") {
		t.Error("a version 3 peer received a ring other than the default one")
	}
}

// memLimits is a LimitHandler keeping every count received.
type memLimits struct {
	mu sync.Mutex
	cs []ratelimit.Count
}

func (h *memLimits) HandleLimitCounts(_ string, cs []ratelimit.Count) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cs = append(h.cs, cs...)
}

func (h *memLimits) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.cs)
}

// Request-limit counts go to version 5 peers only: a version 4 peer never
// receives them (counted as dropped), a current one gets every count of a
// report larger than one frame's batch.
func TestLimitCountsOnlyToPeersThatAnnounceThem(t *testing.T) {
	ca, _ := pki.NewCA("t")
	pa := make(chanPeers, 1)
	hb, hc := &memLimits{}, &memLimits{}
	b := startMesh(t, ca, "b", nil, func(c *Config) { c.Limits = hb })
	c := startMesh(t, ca, "c", nil, func(c *Config) { c.Limits, c.MaxVersion = hc, wire.LimitsSince-1 })
	a := startMesh(t, ca, "a", pa, nil)
	pa <- []string{b.Addr(), c.Addr()}
	waitFor(t, "a online to both", func() bool { return len(a.OnlineNames()) == 2 })
	const n = 5000 // more than one 64 KiB frame
	cs := make([]ratelimit.Count, n)
	for i := range cs {
		cs[i] = ratelimit.Count{Limit: 1, Key: uint64(i), Window: 1000, Count: uint32(i)}
	}
	a.PublishLimits(cs)
	waitFor(t, "every count at b, and counted as undeliverable for c", func() bool {
		st := a.Status()
		return hb.len() == n && st.LimitSent == n && st.LimitDrops == n
	})
	if hc.len() != 0 {
		t.Fatal("a version 4 peer received limit counts")
	}
	if got := b.Status().LimitReceived; got != n {
		t.Errorf("b counted %d received, want %d", got, n)
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	for i, c := range hb.cs {
		if c != cs[i] {
			t.Fatalf("count %d arrived as %+v, want %+v", i, c, cs[i])
		}
	}
}
