package sessionmesh

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/tls12"
)

func sidHost(t testing.TB) (Host, *tls.Certificate) {
	cert, _ := serverCert()
	return Host{Leaf: cert.Certificate[0], Policy: "default/p", PolicyDigest: "v1"}, cert
}

// serveTLS12 runs internal/tls12 with the node's session-ID cache and
// answers one byte per connection.
func serveTLS12(t *testing.T, n *Node) string {
	h, cert := sidHost(t)
	cfg := &tls12.Config{Certificate: cert, Sessions: n.SessionIDCache(h), ServesTLS13: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				sc := tls12.Server(c, cfg)
				if sc.Handshake() == nil {
					sc.Write([]byte{1})
					sc.Read(make([]byte, 1))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func sClientReused(t *testing.T, addr string, args ...string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "openssl", append([]string{"s_client", "-connect", addr, "-tls1_2", "-no_ticket", "-servername", "a.example.com"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	return strings.Contains(string(out), "Reused, TLSv1.2")
}

// TestSessionIDAcrossNodes: a real OpenSSL client's session ID issued on
// one node resumes on every other node, from a replicated record of kind
// KindTLS12Session.
func TestSessionIDAcrossNodes(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl not installed (hack/install-deps.sh): %v", err)
	}
	for _, mode := range []Mode{Stateful, TicketKeys} {
		t.Run(mode.String(), func(t *testing.T) {
			nodes, _ := cluster(t, 3, mode)
			var addrs []string
			for _, n := range nodes {
				addrs = append(addrs, serveTLS12(t, n.Node))
			}
			sess := filepath.Join(t.TempDir(), "s.pem")
			if sClientReused(t, addrs[0], "-sess_out", sess) {
				t.Fatal("first connection reused")
			}
			for _, a := range []string{addrs[1], addrs[2], addrs[0]} {
				if !sClientReused(t, a, "-sess_in", sess) {
					t.Fatalf("not resumed on %s", a)
				}
			}
			var kinds []store.Kind
			nodes[2].store.Range(time.Now(), func(r store.Record) bool { kinds = append(kinds, r.Kind); return true })
			if len(kinds) != 1 || kinds[0] != store.KindTLS12Session {
				t.Fatalf("records on node 2: kinds %v", kinds)
			}
		})
	}
}

func TestSessionIDMisses(t *testing.T) {
	nodes, _ := cluster(t, 2, Stateful)
	h, _ := sidHost(t)
	a, b := nodes[0].SessionIDCache(h), nodes[1].SessionIDCache(h)
	state := []byte("opaque state")
	id := a.NewSessionID("a.example.com")
	if len(id) != 32 {
		t.Fatalf("id of %d bytes", len(id))
	}
	a.Put(id, "a.example.com", state)
	if got := b.Get(id, "a.example.com", nil); string(got) != string(state) {
		t.Fatalf("peer: %q", got)
	}
	misses := func(r int) uint64 { return nodes[1].m.misses[r].Load() }

	forged := append([]byte(nil), id...)
	forged[20] ^= 1
	if b.Get(forged, "a.example.com", nil) != nil || misses(missInvalid) != 1 {
		t.Fatal("forged id resumed")
	}
	if b.Get(id, "b.example.com", nil) != nil || misses(missBinding) != 1 {
		t.Fatal("resumed for another server name")
	}
	other := nodes[1].SessionIDCache(Host{Leaf: h.Leaf, Policy: "default/p", PolicyDigest: "v2"})
	if other.Get(id, "a.example.com", nil) != nil || misses(missBinding) != 2 {
		t.Fatal("resumed under another policy generation")
	}
	// An id whose expiry has passed misses before any lookup, even with a
	// valid MAC (minted here with the cluster key, as a replica would).
	old := append([]byte(nil), id...)
	binary.BigEndian.PutUint32(old[9:13], uint32(time.Now().Add(-time.Second).Unix()))
	m := nodes[0].sidMAC(old)
	copy(old[sidMACOff:], m[:8])
	if b.Get(old, "a.example.com", nil) != nil || misses(missExpired) != 1 {
		t.Fatal("expired id resumed")
	}
	if !nodes[0].Revoke(id) {
		t.Fatal("Revoke refused a session id")
	}
	waitFor(t, "revocation replicated", func() bool {
		_, st := nodes[1].store.Get(mustKey(t, nodes[1].Node, id), time.Now())
		return st == store.Revoked
	})
	if b.Get(id, "a.example.com", nil) != nil || misses(missRevoked) != 1 {
		t.Fatal("revoked id resumed")
	}
}

func mustKey(t *testing.T, n *Node, id []byte) store.Key {
	_, _, k, ok := n.parseSessionID(id)
	if !ok {
		t.Fatal("bad id")
	}
	return k
}

// TestSessionIDLookupsBounded is finding 8 of issue 15 for the session-ID
// path: a client presenting MAC-valid ids whose records do not exist makes
// a replica ask the issuer each time, until its address's bucket is empty.
// It failed before the bucket was applied here (40 ids, 40 lookups).
func TestSessionIDLookupsBounded(t *testing.T) {
	nodes, _ := cluster(t, 2, Stateful)
	h, _ := sidHost(t)
	a, b := nodes[0].SessionIDCache(h), nodes[1].SessionIDCache(h)
	client := &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 40000}
	lookups := func() uint64 { return nodes[1].m.remoteLookups.Load() }
	start := time.Now()
	const ids = 40
	for range ids {
		// Issued by a (valid MAC, unexpired), never stored.
		if b.Get(a.NewSessionID("a.example.com"), "a.example.com", client) != nil {
			t.Fatal("an unstored id resumed")
		}
	}
	// The bucket starts with sourceBurst tokens, every lookup here finds
	// nothing and takes one, and it refills one per sourceRefill.
	bound := uint64(sourceBurst + time.Since(start)/sourceRefill + 1)
	if got := lookups(); got > bound || got == 0 {
		t.Errorf("%d unknown ids from one address made %d remote lookups, want 1..%d", ids, got, bound)
	}
	if nodes[1].m.limited[limitSource].Load() == 0 || nodes[1].m.misses[missLimited].Load() == 0 {
		t.Error("refused lookups not counted")
	}
	// Another address still gets its lookup.
	before := lookups()
	other := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000}
	b.Get(a.NewSessionID("a.example.com"), "a.example.com", other)
	if lookups() != before+1 {
		t.Error("another address was limited too")
	}
	// A real session, once replicated, resumes for the limited address:
	// it needs no lookup.
	state := []byte("opaque state")
	id := a.NewSessionID("a.example.com")
	a.Put(id, "a.example.com", state)
	waitFor(t, "session replicated", func() bool {
		_, st := nodes[1].store.Get(mustKey(t, nodes[1].Node, id), time.Now())
		return st == store.Found
	})
	if got := b.Get(id, "a.example.com", client); string(got) != string(state) {
		t.Errorf("replicated session for the limited address: %q", got)
	}
}
