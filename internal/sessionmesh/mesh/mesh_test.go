package mesh

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
	"github.com/meshgate/meshgate/internal/testkit"
)

// memHandler is a Handler backed by a store.
type memHandler struct {
	s     *store.Store
	mu    sync.Mutex
	keys  []wire.TicketKey
	rings []string // the ring of every TicketKeys message, in order
}

func newMemHandler() *memHandler { return &memHandler{s: store.New(1 << 24)} }

func (h *memHandler) HandleInsert(_ string, recs []store.Record) {
	for _, r := range recs {
		h.s.Put(r, time.Now())
	}
}
func (h *memHandler) HandleSnapshot(from string, recs []store.Record) { h.HandleInsert(from, recs) }
func (h *memHandler) HandleDelete(_ string, ts []wire.Tombstone) {
	for _, t := range ts {
		h.s.Delete(t.Key, t.Expires, time.Now())
	}
}
func (h *memHandler) HandleTicketKeys(_ string, k wire.TicketKeys) {
	h.mu.Lock()
	h.keys = k.Keys
	h.rings = append(h.rings, k.Ring)
	h.mu.Unlock()
}
func (h *memHandler) Lookup(k store.Key) (store.Record, bool) {
	r, st := h.s.Get(k, time.Now())
	return r, st == store.Found
}
func (h *memHandler) Snapshot(fn func(store.Record) bool) { h.s.Range(time.Now(), fn) }
func (h *memHandler) TicketKeys() []wire.TicketKeys       { return nil }
func (h *memHandler) Tombstones(fn func(wire.Tombstone) bool) {
	h.s.RangeTombstones(time.Now(), func(k store.Key, exp int64) bool { return fn(wire.Tombstone{Key: k, Expires: exp}) })
}

type testMesh struct {
	*Mesh
	h      *memHandler
	cancel context.CancelFunc
	done   chan struct{}
}

func startMesh(t testing.TB, ca *pki.CA, name string, peers PeerSource, mut func(*Config)) *testMesh {
	t.Helper()
	nc, err := ca.NewNodeCert(name, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h := newMemHandler()
	cfg := Config{NodeName: name, ClusterID: "test", ListenAddr: "127.0.0.1:0", CA: ca,
		Cert: nc.Get, Peers: peers, Handler: h, Log: logr.Discard(),
		InitialSync: 200 * time.Millisecond, ReconnectMin: 10 * time.Millisecond,
		ReconnectMax: 100 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond,
		DeadAfter: 500 * time.Millisecond}
	if mut != nil {
		mut(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tm := &testMesh{Mesh: m, h: h, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(tm.done); m.Run(ctx) }()
	t.Cleanup(tm.stop)
	return tm
}

func (tm *testMesh) stop() { tm.cancel(); <-tm.done }

// chanPeers is a PeerSource fed by the test.
type chanPeers chan []string

func (c chanPeers) Peers(ctx context.Context) <-chan []string {
	out := make(chan []string)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-c:
				select {
				case out <- s:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, what, cond)
}

func record(i uint64) store.Record {
	var k store.Key
	binary.LittleEndian.PutUint64(k[:8], i*0x9E3779B97F4A7C15) // spread over shards
	binary.LittleEndian.PutUint64(k[8:], i)
	now := time.Now()
	return store.Record{Key: k, Origin: 1, Created: now.UnixNano(),
		Expires: now.Add(time.Minute).UnixNano(), State: []byte("state")}
}

func pair(t *testing.T, ca *pki.CA) (*testMesh, *testMesh) {
	pa, pb := make(chanPeers, 4), make(chanPeers, 4)
	a := startMesh(t, ca, "a", pa, nil)
	b := startMesh(t, ca, "b", pb, nil)
	pa <- []string{b.Addr(), a.Addr()}
	pb <- []string{a.Addr()}
	waitFor(t, "pair online", func() bool { return len(a.OnlineNames()) == 1 && len(b.OnlineNames()) == 1 })
	return a, b
}

func TestReplicateLookupDelete(t *testing.T) {
	ca, _ := pki.NewCA("t")
	a, b := pair(t, ca)
	for i := uint64(0); i < 100; i++ {
		r := record(i)
		a.h.s.Put(r, time.Now())
		a.Insert(r)
	}
	waitFor(t, "replication", func() bool { return b.h.s.Len() == 100 })
	// Point lookup of a record only a has.
	r := record(1000)
	a.h.s.Put(r, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	got, ok, err := b.Lookup(ctx, NodeID("a"), r.Key)
	if err != nil || !ok || string(got.State) != "state" {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	if _, ok, _ := b.Lookup(ctx, NodeID("a"), record(5000).Key); ok {
		t.Fatal("lookup found a missing key")
	}
	if _, _, err := b.Lookup(ctx, NodeID("nobody"), r.Key); err != ErrNoPeer {
		t.Fatalf("lookup to unknown node: %v", err)
	}
	a.Delete(wire.Tombstone{Key: record(3).Key, Expires: time.Now().Add(time.Minute).UnixNano()})
	waitFor(t, "delete", func() bool { return b.h.s.Len() == 99 })
	if st := a.Status(); st.PeersOnline != 1 || st.MsgsOut == 0 || st.BytesOut == 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestSnapshotForJoiner(t *testing.T) {
	ca, _ := pki.NewCA("t")
	pa := make(chanPeers, 4)
	a := startMesh(t, ca, "a", pa, nil)
	pa <- nil
	for i := uint64(0); i < 5000; i++ {
		a.h.s.Put(record(i), time.Now())
	}
	c := startMesh(t, ca, "c", StaticPeers{a.Addr()}, nil)
	waitFor(t, "snapshot", c.Synced)
	if c.h.s.Len() != 5000 {
		t.Fatalf("snapshot carried %d records", c.h.s.Len())
	}
}

func TestQueueDropsWhenFull(t *testing.T) {
	ca, _ := pki.NewCA("t")
	a := startMesh(t, ca, "a", StaticPeers{"127.0.0.1:1"}, func(c *Config) { c.QueueRecords = 10 })
	waitFor(t, "peer known", func() bool { return len(a.Status().Peers) == 1 })
	for i := uint64(0); i < 25; i++ {
		a.Insert(record(i))
	}
	st := a.Status()
	if st.Drops != 15 || st.Peers[0].Pending != 10 || st.Peers[0].Drops != 15 {
		t.Fatalf("status %+v", st)
	}
}

func TestPeerSetChanges(t *testing.T) {
	ca, _ := pki.NewCA("t")
	a, b := pair(t, ca)
	pc := make(chanPeers, 1)
	c := startMesh(t, ca, "c", pc, nil)
	pc <- []string{a.Addr(), b.Addr()}
	waitFor(t, "c joined", func() bool { return len(c.OnlineNames()) == 2 })
	pc <- []string{b.Addr()}
	waitFor(t, "a removed from c", func() bool {
		st := c.Status()
		return len(st.Peers) == 1 && st.Peers[0].Addr == b.Addr()
	})
	b.stop() // clean leave
	waitFor(t, "b seen as gone", func() bool { return len(a.OnlineNames()) == 0 && len(c.OnlineNames()) == 0 })
}

// dialStranger opens a TLS connection to m presenting cert (may be nil).
func dialStranger(t *testing.T, m *testMesh, cert *tls.Certificate) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", m.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(2 * time.Second))
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if cert != nil {
		// Present the certificate even when its issuer is not among the
		// server's acceptable CAs (crypto/tls would otherwise send none).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	// TLS 1.3 client certificates are checked after the client's Finished:
	// a read surfaces the server's rejection.
	return tc, nil
}

func TestStrangersRejected(t *testing.T) {
	ca, _ := pki.NewCA("t")
	other, _ := pki.NewCA("other")
	a, b := pair(t, ca)
	good, _ := ca.IssueNode("stranger", nil, time.Hour)
	foreign, _ := other.IssueNode("stranger", nil, time.Hour)
	hello := func(mut func(*wire.Hello)) []byte {
		h := &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
			ClusterID: "test", NodeName: "stranger"}
		if mut != nil {
			mut(h)
		}
		return wire.AppendFrame(nil, h)
	}
	tests := []struct {
		name   string
		cert   *tls.Certificate
		plain  []byte // sent without TLS
		send   []byte // sent after the handshake
		after  []byte // sent after a successful hello exchange
		reason string
	}{
		{name: "garbage", plain: []byte("GET / HTTP/1.1\r\n\r\n"), reason: RejectHandshake},
		{name: "no client cert", send: []byte{0}, reason: RejectNoClientCert},
		{name: "other CA", cert: foreign, send: []byte{0}, reason: RejectBadCert},
		{name: "other cluster", cert: good, send: hello(func(h *wire.Hello) { h.ClusterID = "x" }), reason: RejectCluster},
		{name: "version", cert: good, send: hello(func(h *wire.Hello) { h.MinVersion, h.MaxVersion = 90, 99 }), reason: RejectVersion},
		{name: "name", cert: good, send: hello(func(h *wire.Hello) { h.NodeName = "a" }), reason: RejectSelf},
		{name: "cert name", cert: good, send: hello(func(h *wire.Hello) { h.NodeName = "zz" }), reason: RejectName},
		{name: "no hello", cert: good, send: wire.AppendFrame(nil, &wire.Heartbeat{}), reason: RejectHello},
		{name: "oversized", cert: good, send: hello(nil), after: []byte{2, 0xff, 0, 0, 0}, reason: RejectTooLarge},
		{name: "unknown type", cert: good, send: hello(nil), after: []byte{250, 0, 0, 0, 0}, reason: RejectMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.Status().Rejected[tc.reason]
			if tc.plain != nil {
				raw, err := net.Dial("tcp", a.Addr())
				if err != nil {
					t.Fatal(err)
				}
				raw.Write(tc.plain)
				raw.Close()
			} else if c, err := dialStranger(t, a, tc.cert); err == nil {
				c.Write(tc.send)
				if tc.after != nil {
					if _, err := wire.NewReader(c, 0).ReadMessage(); err != nil {
						t.Fatalf("no hello back: %v", err)
					}
					c.Write(tc.after)
				}
				var buf [64]byte
				c.Read(buf[:])
				c.Close()
			}
			waitFor(t, "rejection "+tc.reason, func() bool { return a.Status().Rejected[tc.reason] > before })
		})
	}
	// The node kept serving its real peer.
	r := record(42)
	a.h.s.Put(r, time.Now())
	a.Insert(r)
	waitFor(t, "replication after strangers", func() bool { _, ok := b.h.Lookup(r.Key); return ok })
}

func TestDialRefusesForeignServer(t *testing.T) {
	ca, _ := pki.NewCA("t")
	other, _ := pki.NewCA("other")
	f := startMesh(t, other, "f", nil, nil)
	a := startMesh(t, ca, "a", StaticPeers{f.Addr()}, nil)
	// Two refused handshakes on f: a dialled, failed, backed off and
	// dialled again, and neither attempt brought the peers online.
	waitFor(t, "f refusing a twice", func() bool {
		var n uint64
		for _, v := range f.Status().Rejected {
			n += v
		}
		return n >= 2
	})
	if len(a.OnlineNames()) != 0 || len(f.OnlineNames()) != 0 {
		t.Fatal("meshes of different CAs connected")
	}
	if a.Status().Peers[0].State == StateOnline {
		t.Fatal("foreign peer online")
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	ca, _ := pki.NewCA("t")
	base := runtime.NumGoroutine()
	for round := 0; round < 5; round++ {
		var ms []*testMesh
		var addrs []string
		feeds := make([]chanPeers, 3)
		for i := range feeds {
			feeds[i] = make(chanPeers, 1)
			m := startMesh(t, ca, string(rune('a'+i)), feeds[i], nil)
			ms = append(ms, m)
			addrs = append(addrs, m.Addr())
		}
		for _, f := range feeds {
			f <- addrs
		}
		waitFor(t, "connected", func() bool {
			for _, m := range ms {
				if len(m.OnlineNames()) != 2 {
					return false
				}
			}
			return true
		})
		for i, m := range ms {
			if i == 0 && round%2 == 0 {
				m.Kill()
			}
			m.stop()
		}
	}
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })
}

func TestOversizedStateStaysLocal(t *testing.T) {
	ca, _ := pki.NewCA("t")
	a, b := pair(t, ca)
	big := record(1)
	big.State = make([]byte, wire.MaxStateSize+1)
	a.h.s.Put(big, time.Now())
	a.Insert(big)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, ok, err := b.Lookup(ctx, NodeID("a"), big.Key); ok || err != nil {
		t.Fatalf("lookup of oversized state: found=%v err=%v", ok, err)
	}
	small := record(2)
	a.h.s.Put(small, time.Now())
	a.Insert(small)
	waitFor(t, "connection still usable", func() bool { _, ok := b.h.Lookup(small.Key); return ok })
	if _, ok := b.h.Lookup(big.Key); ok {
		t.Fatal("oversized state replicated")
	}
	if st := b.Status(); st.Rejected[RejectMalformed] != 0 {
		t.Fatalf("connection rejected: %v", st.Rejected)
	}
}

func TestOwnAddressUnderAnotherSpelling(t *testing.T) {
	ca, _ := pki.NewCA("t")
	pa := make(chanPeers, 1)
	a := startMesh(t, ca, "a", pa, nil)
	_, port, _ := net.SplitHostPort(a.Addr())
	pa <- []string{net.JoinHostPort("localhost", port)}
	waitFor(t, "self detected", func() bool {
		st := a.Status()
		return len(st.Peers) == 1 && st.Peers[0].State == StateSelf
	})
	if !a.Synced() {
		waitFor(t, "alone is synced", a.Synced)
	}
}

func TestRestartedPeerReconnectedAtOnce(t *testing.T) {
	ca, _ := pki.NewCA("t")
	slow := func(c *Config) { c.ReconnectMin, c.ReconnectMax = 5*time.Second, 10*time.Second }
	pa := make(chanPeers, 1)
	a := startMesh(t, ca, "a", pa, slow)
	b := startMesh(t, ca, "b", StaticPeers{a.Addr()}, slow)
	addr := b.Addr()
	pa <- []string{addr}
	waitFor(t, "a online", func() bool { return len(a.OnlineNames()) == 1 })
	b.stop() // Goodbye: a would now wait ReconnectMax before redialing
	waitFor(t, "a sees b gone", func() bool { return len(a.OnlineNames()) == 0 })
	b2 := startMesh(t, ca, "b", StaticPeers{a.Addr()}, func(c *Config) { slow(c); c.ListenAddr = addr })
	start := time.Now()
	waitFor(t, "a redials b at once", func() bool { return len(a.OnlineNames()) == 1 && len(b2.OnlineNames()) == 1 })
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("reconnect took %v", d)
	}
}
