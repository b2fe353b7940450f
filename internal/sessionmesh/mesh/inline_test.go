package mesh

import (
	"bytes"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

// quietPair is pair with no heartbeats during the test, so that after
// start-up nothing but the test's inserts writes a's outbound connection.
// a's FlushInterval is 1 ns, so its connection counts as idle as soon as
// nothing holds it.
func quietPair(t *testing.T, mutB func(*Config)) (*testMesh, *testMesh) {
	quiet := func(c *Config) { c.HeartbeatInterval, c.DeadAfter = time.Hour, time.Hour }
	pa, pb := make(chanPeers, 4), make(chanPeers, 4)
	ca, _ := pki.NewCA("t")
	a := startMesh(t, ca, "a", pa, func(c *Config) {
		quiet(c)
		c.InlineWriteTimeout, c.FlushInterval = 20*time.Millisecond, time.Nanosecond
	})
	b := startMesh(t, ca, "b", pb, func(c *Config) {
		quiet(c)
		if mutB != nil {
			mutB(c)
		}
	})
	pa <- []string{b.Addr()}
	pb <- []string{a.Addr()}
	waitFor(t, "pair online", func() bool { return len(a.OnlineNames()) == 1 && len(b.OnlineNames()) == 1 })
	return a, b
}

func sentTo(m *testMesh) uint64 {
	st := m.Status()
	if len(st.Peers) != 1 {
		return 0
	}
	return st.Peers[0].Sent
}

// On an idle connection Insert writes the record itself: when it returns,
// the record is already sent (counted once its frame was flushed to the
// socket), without a hand-off to the connection's goroutine.
func TestInsertOnIdleConnectionWritesInline(t *testing.T) {
	a, b := quietPair(t, nil)
	a.Insert(record(0))
	waitFor(t, "first record on b", func() bool { return b.h.s.Len() == 1 })
	// From here on a's connection goroutine has nothing to write (no
	// heartbeats, the start-up flush is done), so nothing else holds the
	// connection when an insert comes.
	for i := uint64(1); i <= 20; i++ {
		a.Insert(record(i))
		if got := sentTo(a); got != i+1 {
			t.Fatalf("after insert %d returned, %d records sent; want %d (written inline)", i, got, i+1)
		}
	}
	waitFor(t, "all records on b", func() bool { return b.h.s.Len() == 21 })
}

// blockingInserts blocks HandleInsert, so the peer stops reading its
// connection once one batch arrived.
type blockingInserts struct {
	*memHandler
	release chan struct{}
}

func (h *blockingInserts) HandleInsert(from string, recs []store.Record) {
	<-h.release
	h.memHandler.HandleInsert(from, recs)
}

// A peer that stopped reading holds an inline Insert for at most
// InlineWriteTimeout: once the socket buffers are full the write times
// out, the connection is given up, and later inserts only queue.
func TestInlineWriteBoundedWhenPeerStopsReading(t *testing.T) {
	h := &blockingInserts{memHandler: newMemHandler(), release: make(chan struct{})}
	defer close(h.release)
	a, _ := quietPair(t, func(c *Config) { c.Handler = h })
	state := bytes.Repeat([]byte{7}, 60<<10)
	// Loopback socket buffers hold a few MiB; 2,000 × 60 KiB is 120 MiB,
	// far more than they can, so some write must wait for the peer.
	for i := range 2000 {
		r := record(uint64(i))
		r.State = state
		start := time.Now()
		a.Insert(r)
		// The bound: the 20 ms timeout plus scheduling on a loaded
		// machine; without it the write would wait for DeadAfter (an hour).
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("insert %d took %v with the peer not reading", i, d)
		}
		if a.Status().Drops > 0 {
			return // the write that timed out lost its record: the connection was given up
		}
	}
	t.Fatal("2,000 large inserts to a peer that does not read, and the connection is still up")
}
