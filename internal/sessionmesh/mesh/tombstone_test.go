package mesh

import (
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// freeAddr reserves a loopback port for a node started later.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestTombstonesReachEveryPeer is finding 10 of issue 15 (transport). A
// revocation made while a peer's queue is full, and a revocation made
// before a peer joined, must both reach it. Before the fix the first was
// dropped (counted as a drop, like a record) and the second was never
// sent, since snapshots carried records only: the peer held no tombstone,
// so a late insert or snapshot record brought the session back.
func TestTombstonesReachEveryPeer(t *testing.T) {
	ca, _ := pki.NewCA("t")
	bAddr := freeAddr(t)
	pa := make(chanPeers, 4)
	a := startMesh(t, ca, "a", pa, func(c *Config) { c.QueueRecords = 4 })
	old := record(1000) // revoked before b exists
	a.h.s.Put(old, time.Now())
	a.h.s.Delete(old.Key, old.Expires, time.Now())

	pa <- []string{bAddr} // b is not up: a's queue for it fills
	waitFor(t, "a's peer towards b", func() bool { return len(a.Status().Peers) == 1 })
	for i := range 10 {
		r := record(uint64(i))
		a.h.s.Put(r, time.Now())
		a.Insert(r)
	}
	full := record(2000) // revoked while the queue is full
	a.h.s.Put(full, time.Now())
	a.h.s.Delete(full.Key, full.Expires, time.Now())
	a.Delete(wire.Tombstone{Key: full.Key, Expires: full.Expires})

	b := startMesh(t, ca, "b", StaticPeers{a.Addr()}, func(c *Config) { c.ListenAddr = bAddr })
	waitFor(t, "b synced", func() bool { return b.Synced() && len(b.OnlineNames()) == 1 })
	// Tombstones are sent before the records of a snapshot, and the
	// queue's tombstones before its records: once b holds a's records,
	// any tombstone that was going to arrive has.
	waitFor(t, "b holding a's records", func() bool { return b.h.s.Len() >= 10 })
	for _, r := range []store.Record{old, full} {
		if _, st := b.h.s.Get(r.Key, time.Now()); st != store.Revoked {
			t.Errorf("record %x on b: %v, want revoked", r.Key[8:9], st)
		}
	}
}
