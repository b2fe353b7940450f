package tlsconfig

import (
	"crypto/rand"
	"crypto/tls"
	"net"
	"sync"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/tls12"
)

// mapCache is an in-memory tls12.SessionCache.
type mapCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *mapCache) NewSessionID(string) []byte {
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	return id
}

func (c *mapCache) Put(id []byte, sni string, state []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[sni+"/"+string(id)] = state
}

func (c *mapCache) Get(id []byte, sni string, _ net.Addr) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[sni+"/"+string(id)]
}

// withSessionIDs is a recorder that also serves the session-ID path from
// mapCaches, refusing Off hosts as the session layer does.
type withSessionIDs struct {
	recorder
	hosts int
}

func (m *withSessionIDs) ConfigureTLS12(cfg *tls12.Config, h sessionmesh.Host) bool {
	if h.Mode == sessionmesh.Off {
		return false
	}
	m.mu.Lock()
	m.hosts++
	m.mu.Unlock()
	cfg.Sessions = &mapCache{m: map[string][]byte{}}
	return true
}

// TestSessionIDPathPolicies: which hosts get a session-ID path
// configuration, built with the rest of the Set.
func TestSessionIDPathPolicies(t *testing.T) {
	cert := certificate(t, "a.example.com")
	cases := []struct {
		name string
		mod  func(*routing.TLSPolicy)
		want bool
	}{
		{"default", func(*routing.TLSPolicy) {}, true},
		{"ticket keys still issue session IDs", func(p *routing.TLSPolicy) { p.SessionMode = routing.SessionTicketKeys }, true},
		{"resumption off", func(p *routing.TLSPolicy) { p.SessionMode = routing.SessionOff }, false},
		{"TLS 1.3 only", func(p *routing.TLSPolicy) { p.MinVersion = tls.VersionTLS13 }, false},
		{"CBC suites only", func(p *routing.TLSPolicy) {
			p.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}, false},
		{"TLS 1.2 only", func(p *routing.TLSPolicy) { p.MaxVersion = tls.VersionTLS12 }, true},
	}
	ms := &withSessionIDs{}
	for _, c := range cases {
		p := routing.DefaultPolicy()
		c.mod(p)
		h := &routing.TLSHost{Name: "a.example.com", Certificate: cert, Policy: p}
		set := Build(&routing.Table{TLS: routing.TLSHosts{Default: h}}, ms)
		got := set.TLS12(h)
		if (got != nil) != c.want || set.HasTLS12() != c.want {
			t.Errorf("%s: config %v, want %v", c.name, got != nil, c.want)
		}
		if got != nil && got.ServesTLS13 != (p.MaxVersion >= tls.VersionTLS13) {
			t.Errorf("%s: ServesTLS13 %v", c.name, got.ServesTLS13)
		}
	}
	if ms.hosts != 3 {
		t.Fatalf("caches built for %d hosts, want 3 (the usable ones that resume)", ms.hosts)
	}
	// Without SessionIDs, no host gets the path.
	h := &routing.TLSHost{Name: "a.example.com", Certificate: cert, Policy: routing.DefaultPolicy()}
	if set := Build(&routing.Table{TLS: routing.TLSHosts{Default: h}}, &recorder{}); set.HasTLS12() || set.TLS12(h) != nil {
		t.Fatal("session-ID path built for Sessions without SessionIDs")
	}
	var nilSet *Set
	if nilSet.HasTLS12() || nilSet.Table() != nil || nilSet.TLS12(h) != nil {
		t.Fatal("nil Set is not empty")
	}
}
