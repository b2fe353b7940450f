package mesh

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// BatchBytes is bounded by what one frame holds: a configuration value
// beyond it is refused by New instead of panicking in wire.AppendFrame
// when a batch or snapshot chunk of that size is written.
func TestBatchBytesBounded(t *testing.T) {
	ca, _ := pki.NewCA("t")
	nc, _ := ca.NewNodeCert("a", nil, time.Hour)
	cfg := Config{NodeName: "a", ClusterID: "c", ListenAddr: "127.0.0.1:0", CA: ca, Cert: nc.Get,
		Handler: newMemHandler(), BatchBytes: 4 << 20}
	if m, err := New(cfg); err == nil {
		m.ln.Close()
		t.Fatal("New accepted BatchBytes of 4 MiB, larger than a frame")
	}

	// At the limit, a snapshot of large records is chunked within frames.
	a := startMesh(t, ca, "a", nil, func(c *Config) { c.BatchBytes = wire.MaxBatchBytes })
	state := bytes.Repeat([]byte{7}, wire.MaxStateSize)
	for i := range 40 { // 40 × 64 KiB: 2.5 MiB, three frames' worth
		r := record(uint64(i))
		r.State = state
		a.h.s.Put(r, time.Now())
	}
	b := startMesh(t, ca, "b", StaticPeers{a.Addr()}, nil)
	waitFor(t, "snapshot of 40 large records", func() bool { return b.h.s.Len() == 40 && b.Synced() })
}

// stallingHandler blocks TicketKeys (called when an outbound connection
// comes up) until released, so a peer's goroutine is still running when the
// mesh stops.
type stallingHandler struct {
	*memHandler
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *stallingHandler) TicketKeys() []wire.TicketKeys {
	h.once.Do(func() { close(h.entered) })
	<-h.release
	return nil
}

// Run waits for its peers' goroutines without holding the mesh mutex, so
// Kill (and anything else taking it) is not stuck behind a slow peer.
func TestRunDrainsPeersWithoutTheLock(t *testing.T) {
	ca, _ := pki.NewCA("t")
	b := startMesh(t, ca, "b", nil, nil)
	h := &stallingHandler{memHandler: newMemHandler(), entered: make(chan struct{}), release: make(chan struct{})}
	nc, _ := ca.NewNodeCert("a", nil, time.Hour)
	m, err := New(Config{NodeName: "a", ClusterID: "test", ListenAddr: "127.0.0.1:0", CA: ca, Cert: nc.Get,
		Peers: StaticPeers{b.Addr()}, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	draining := make(chan struct{})
	m.testHookDraining = func() { close(draining) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	<-h.entered // the peer's goroutine is inside the handler
	cancel()
	<-draining // Run is about to wait for it
	killed := make(chan struct{})
	go func() { m.Kill(); close(killed) }()
	select {
	case <-killed:
	case <-time.After(5 * time.Second):
		close(h.release)
		t.Fatal("Kill blocked while Run waited for a peer")
	}
	close(h.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var _ Handler = (*stallingHandler)(nil)
