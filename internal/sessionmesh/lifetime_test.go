package sessionmesh

import (
	"crypto/tls"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// fakeClock is a controllable Config.Now, safe for concurrent use.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) now() time.Time                        { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) advance(d time.Duration)               { c.offset.Add(int64(d)) }
func (c *fakeClock) config(cfg *Config)                    { cfg.Now = c.now }
func newFakeClock() *fakeClock                             { return &fakeClock{} }
func (tn *testNode) missesExpired() float64                { return float64(tn.m.misses[missExpired].Load()) }
func (tn *testNode) serveHost(t *testing.T, h Host) string { return serveHost(t, tn.Node, h) }

// serveHost serves TLS for h, configured through ConfigureTLS, on a new
// listener (a new table's configuration of the same host), one byte per
// connection.
func serveHost(t *testing.T, n *Node, h Host) string {
	t.Helper()
	cert, _ := serverCert()
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	n.ConfigureTLS(cfg, h)
	ln, err := listenOneByte(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestPolicyEditEndsSessions is finding 6 of issue 15: in standalone mode
// every TLSPolicy has generation 0, so sessions bound to (policy,
// generation) survived every edit of the policy, and the expiry stored at
// issue was never checked against the policy's current lifetime. A session
// issued under lifetime 24h must not resume once the lifetime is 1s and it
// is 3s old; one issued under other settings (here minVersion, so another
// content digest) must not resume under the new ones. Before the fix both
// resumed.
func TestPolicyEditEndsSessions(t *testing.T) {
	for _, mode := range []Mode{Stateful, TicketKeys} {
		for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(mode.String()+"/"+tls.VersionName(ver), func(t *testing.T) {
				clock := newFakeClock()
				tn := newTestNode(t, nil, "solo", mode, func(c *Config) {
					c.ListenAddr, c.Peers = "", nil
					c.Log = logr.Discard()
					clock.config(c)
				})
				h := testHost(mustCert(), mode)
				h.Lifetime = 24 * time.Hour
				addr := tn.serveHost(t, h)
				c := newClient(ver)
				if c.mustConnect(t, addr) {
					t.Fatal("first connection resumed")
				}
				if !c.mustConnect(t, addr) {
					t.Fatal("second connection did not resume (sanity)")
				}

				// The policy's lifetime is edited to 1s (same name, same
				// generation 0); the session is 3s old.
				short := h
				short.Lifetime = time.Second
				addr = tn.serveHost(t, short)
				clock.advance(3 * time.Second)
				before := tn.missesExpired()
				if c.mustConnect(t, addr) {
					t.Error("a 3s-old session resumed under lifetime 1s")
				}
				if got := tn.missesExpired() - before; got < 1 {
					t.Errorf("expired misses counted %v, want ≥ 1", got)
				}

				// A session issued now (under lifetime 1s) resumes within it.
				c = newClient(ver)
				c.mustConnect(t, addr)
				if !c.mustConnect(t, addr) {
					t.Error("fresh session did not resume under lifetime 1s")
				}

				// The policy's content changes (generation still 0).
				edited := short
				edited.PolicyDigest = "v2"
				addr = tn.serveHost(t, edited)
				if c.mustConnect(t, addr) {
					t.Error("session resumed after the policy's content changed")
				}
			})
		}
	}
}

// mustCert is the test certificate.
func mustCert() *tls.Certificate {
	cert, _ := serverCert()
	return cert
}

// TestExpiredIDRefusedLocally is finding 8 of issue 15: stateful ids
// stayed MAC-valid after their record expired, so a client replaying old
// ids made a replica that no longer held the record ask the issuer, one
// mesh round trip (up to LookupTimeout of a handshake goroutine) per
// offered identity. The expiry is now under the id's MAC: an expired id is
// refused before any lookup. Before the fix the replica asked its peer.
func TestExpiredIDRefusedLocally(t *testing.T) {
	ca, err := newCA(t)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	nodes := []*testNode{
		newTestNode(t, ca, "node-0", Stateful, clock.config),
		newTestNode(t, ca, "node-1", Stateful, clock.config),
	}
	addrs := []string{nodes[0].MeshAddr(), nodes[1].MeshAddr()}
	for _, tn := range nodes {
		tn.feed.ch <- addrs
	}
	waitFor(t, "mesh connected", func() bool {
		return len(nodes[0].mesh.OnlineNames()) == 1 && len(nodes[1].mesh.OnlineNames()) == 1
	})
	c := newClient(tls.VersionTLS13)
	c.mustConnect(t, nodes[0].tlsAddr)
	id := identity(t, c.cache, "a.example.com")
	waitFor(t, "the session replicated to node-1", func() bool { return nodes[1].store.Len() == 1 })

	// The session's lifetime (testHost: the default 300 s) passes and
	// node-1 sweeps the record: it is no longer held there.
	clock.advance(DefaultLifetime + time.Second)
	nodes[1].store.Sweep(clock.now())
	if n := nodes[1].store.Len(); n != 0 {
		t.Fatalf("node-1 still holds %d records after the sweep", n)
	}
	cert := mustCert()
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	nodes[1].ConfigureTLS(cfg, testHost(cert, Stateful))
	lookups, expired := nodes[1].m.remoteLookups.Load(), nodes[1].missesExpired()
	const offers = 5 // the PSK identities one ClientHello may carry
	for range offers {
		if ss, _ := cfg.UnwrapSession(id, tls.ConnectionState{ServerName: "a.example.com", Version: tls.VersionTLS13}); ss != nil {
			t.Fatal("an expired session resumed")
		}
	}
	if got := nodes[1].m.remoteLookups.Load() - lookups; got != 0 {
		t.Errorf("%d remote lookups for an expired id, want 0", got)
	}
	if got := nodes[1].missesExpired() - expired; got != offers {
		t.Errorf("expired misses counted %v, want %d", got, offers)
	}
}

// TestEarlyDataSingleUse is finding 4 of issue 15: stateful records were
// not single-use, so one PSK that invited 0-RTT was accepted with early
// data every time it was offered, on every replica sharing the store (a
// replayed ClientHello replays its early data). Now only the issuing
// replica accepts early data for a session, once; every other offer, there
// or on a peer, resumes without early data. Before the fix all six offers
// below (three per replica) were accepted with early data.
func TestEarlyDataSingleUse(t *testing.T) {
	nodes, _ := cluster(t, 2, Stateful)
	cert := mustCert()
	// A server whose sessions invite early data, as quic-go's do when
	// 0-RTT is on (crypto/tls sets SessionState.EarlyData only for QUIC).
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	nodes[0].ConfigureTLS(cfg, testHost(cert, Stateful))
	wrap := cfg.WrapSession
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.EarlyData = true
		return wrap(cs, ss)
	}
	ln, err := listenOneByte(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c := newClient(tls.VersionTLS13)
	c.mustConnect(t, ln.Addr().String())
	id := identity(t, c.cache, "a.example.com")
	waitFor(t, "the session replicated to node-1", func() bool { return nodes[1].store.Len() >= 1 })

	hooks := make([]*tls.Config, 2)
	for i, tn := range nodes {
		hooks[i] = &tls.Config{Certificates: []tls.Certificate{*cert}}
		tn.ConfigureTLS(hooks[i], testHost(cert, Stateful))
	}
	cs := tls.ConnectionState{ServerName: "a.example.com", Version: tls.VersionTLS13}
	accepted := 0
	for range 3 {
		for i := range nodes {
			ss, _ := hooks[i].UnwrapSession(id, cs)
			if ss != nil && ss.EarlyData {
				accepted++
			}
		}
	}
	if accepted != 1 {
		t.Errorf("early data accepted %d times for one session across two replicas, want once", accepted)
	}
	if got := nodes[0].m.early[1].Load(); got != 1 {
		t.Errorf("node-0 counted %d accepted, want 1", got)
	}
	// node-1 still resumes the session, without early data.
	if ss, _ := hooks[1].UnwrapSession(id, cs); ss == nil || ss.EarlyData {
		t.Errorf("node-1: session %v, want resumed without early data", ss)
	}
}
