package sessionmesh

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"

	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/testkit"
)

// serverCert is an RSA-2048 certificate for a.example.com and
// b.example.com, with the pool that trusts it. Generated once: RSA keys are
// slow to make and the value is never modified.
var serverCert = sync.OnceValues(func() (*tls.Certificate, *x509.CertPool) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	c, err := testkit.Generate(testkit.Spec{Names: []string{"a.example.com", "b.example.com"}, Key: key})
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Leaf)
	return c.TLS, pool
})

// feed is a PeerSource the test pushes peer sets into.
type feed struct{ ch chan []string }

func newFeed() *feed { return &feed{ch: make(chan []string, 16)} }

func (f *feed) Peers(ctx context.Context) <-chan []string {
	out := make(chan []string)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-f.ch:
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

// testNode is a Node with its running context and a TLS server using it.
type testNode struct {
	*Node
	feed    *feed
	cancel  context.CancelFunc
	done    chan struct{}
	tlsAddr string
	tlsLn   net.Listener
}

func fastMesh(c *mesh.Config) {
	c.InitialSync = 300 * time.Millisecond
	c.ReconnectMin = 10 * time.Millisecond
	c.ReconnectMax = 200 * time.Millisecond
	c.HeartbeatInterval = 100 * time.Millisecond
	c.DeadAfter = time.Second
}

func newTestNode(t testing.TB, ca *pki.CA, name string, mode Mode, mut func(*Config)) *testNode {
	t.Helper()
	f := newFeed()
	cfg := Config{NodeName: name, ListenAddr: "127.0.0.1:0", CA: ca, Peers: f,
		Log: logr.Discard(), MeshTuning: fastMesh}
	if mut != nil {
		mut(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: n, feed: f, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	tn.cancel = cancel
	go func() { defer close(tn.done); n.Run(ctx) }()
	tn.serveTLS(t, mode)
	t.Cleanup(tn.stop)
	return tn
}

// hostRing returns the ticket key ring of testHost's policy, the one the
// node's test server seals under in TicketKeys mode.
func (tn *testNode) hostRing() *ticketRing {
	r, _ := tn.tickets.get(ringName(testHost(mustCert(), TicketKeys).Policy))
	return r
}

func (tn *testNode) stop() {
	tn.cancel()
	<-tn.done
	if tn.tlsLn != nil {
		tn.tlsLn.Close()
	}
}

// serveTLS starts a TLS server configured through ConfigureTLS that writes
// one byte per connection (so TLS 1.3 clients receive their tickets).
func (tn *testNode) serveTLS(t testing.TB, mode Mode) {
	cert, _ := serverCert()
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	tn.ConfigureTLS(cfg, testHost(cert, mode))
	ln, err := listenOneByte(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tn.tlsLn, tn.tlsAddr = ln, ln.Addr().String()
}

// listenOneByte listens for TLS with cfg on a loopback port and serves
// every connection by writing one byte after the handshake (so TLS 1.3
// clients receive their tickets), then reading until the client closes.
// The caller closes the listener.
func listenOneByte(cfg *tls.Config) (net.Listener, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{1})
					io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return ln, nil
}

// cluster starts n nodes named node-0.. and connects them in a full mesh.
func cluster(t testing.TB, n int, mode Mode) ([]*testNode, *pki.CA) {
	t.Helper()
	return clusterWith(t, n, mode, nil)
}

// clusterWith is cluster with mut applied to every node's Config.
func clusterWith(t testing.TB, n int, mode Mode, mut func(*Config)) ([]*testNode, *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*testNode, n)
	var addrs []string
	for i := range nodes {
		nodes[i] = newTestNode(t, ca, "node-"+string(rune('0'+i)), mode, mut)
		addrs = append(addrs, nodes[i].MeshAddr())
	}
	for _, tn := range nodes {
		tn.feed.ch <- addrs
	}
	waitFor(t, "mesh connected", func() bool {
		for _, tn := range nodes {
			if len(tn.mesh.OnlineNames()) != n-1 || tn.Ready() != nil {
				return false
			}
		}
		return true
	})
	return nodes, ca
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, what, cond)
}

// client is a TLS client keeping one session cache, like a browser.
type client struct {
	cache tls.ClientSessionCache
	max   uint16
	sni   string
}

func newClient(version uint16) *client {
	return &client{cache: tls.NewLRUClientSessionCache(8), max: version, sni: "a.example.com"}
}

// connect does one handshake against addr, reads the server's byte and
// reports whether the session was resumed.
func (c *client) connect(addr string) (bool, error) {
	_, pool := serverCert()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: c.sni, RootCAs: pool,
		ClientSessionCache: c.cache, MinVersion: c.max, MaxVersion: c.max,
		CurvePreferences: []tls.CurveID{tls.X25519}})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return false, err
	}
	return conn.ConnectionState().DidResume, nil
}

func (c *client) mustConnect(t testing.TB, addr string) bool {
	t.Helper()
	r, err := c.connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fixedCache offers the one session it holds for any server name.
type fixedCache struct{ s *tls.ClientSessionState }

func (f *fixedCache) Get(string) (*tls.ClientSessionState, bool) { return f.s, f.s != nil }
func (f *fixedCache) Put(_ string, s *tls.ClientSessionState) {
	if s != nil && f.s == nil {
		f.s = s
	}
}

// identity returns the ticket identity the cache holds for name.
func identity(t testing.TB, cache tls.ClientSessionCache, name string) []byte {
	t.Helper()
	cs, ok := cache.Get(name)
	if !ok {
		t.Fatal("no session cached")
	}
	id, _, err := cs.ResumptionState()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newCA(t testing.TB) (*pki.CA, error) {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return ca, nil
}

// testHost is the host every test server serves: policy default/p,
// content v1, the given mode, ticket keys rotated at the node's interval.
func testHost(cert *tls.Certificate, mode Mode) Host {
	return Host{Mode: mode, Leaf: cert.Certificate[0], Policy: "default/p", PolicyDigest: "v1"}
}
