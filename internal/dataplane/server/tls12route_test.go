package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"net/http"

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

func (c *mapCache) Get(id []byte, sni string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[sni+"/"+string(id)]
}

// mapSessions is a SessionIDCaches serving every host from a mapCache
// and counting the hosts it configured.
type mapSessions struct {
	mu    sync.Mutex
	hosts int
}

func (m *mapSessions) ConfigureTLS12(cfg *tls12.Config, h sessionmesh.Host) bool {
	if h.Mode == sessionmesh.Off {
		return false
	}
	m.mu.Lock()
	m.hosts++
	m.mu.Unlock()
	cfg.Sessions = &mapCache{m: map[string][]byte{}}
	return true
}

// sessionIDFixture serves the session-ID path from the fixture's session
// node, which also counts its handshakes.
func sessionIDFixture(t *testing.T) *fixture {
	return newFixture(t, func(c *Config) { c.SessionIDs = c.Sessions.(*sessionmesh.Node) })
}

func (f *fixture) kindCount(t *testing.T, kind, resumed string) float64 {
	v, _ := metricSum(t, f.reg, "meshgate_tls_handshakes_by_kind_total", map[string]string{"kind": kind, "resumed": resumed})
	return v
}

// TestSessionIDPathRouting: ticketless TLS 1.2 hellos take the session-ID
// path, TLS 1.2 hellos with tickets and TLS 1.3 hellos stay on crypto/tls;
// HTTP/1.1 and HTTP/2 work over the path, with Request.TLS set.
func TestSessionIDPathRouting(t *testing.T) {
	f := sessionIDFixture(t)
	base := func() *tls.Config {
		return &tls.Config{RootCAs: f.ca.pool, ServerName: "a.example.com", MaxVersion: tls.VersionTLS12, SessionTicketsDisabled: true}
	}
	for _, h2 := range []bool{false, true} {
		c := f.client(t, h2)
		tr := c.Transport.(*http.Transport)
		tr.TLSClientConfig = base()
		if h2 {
			tr.TLSClientConfig.NextProtos = []string{"h2", "http/1.1"}
		}
		code, e, proto := get(t, c, "https://a.example.com/x")
		if code != 200 || e == nil || e.Hdr.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("h2 %v: %d %+v", h2, code, e)
		}
		if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]; proto != want {
			t.Fatalf("proto %s, want %s", proto, want)
		}
	}
	if got := f.kindCount(t, "session_id", "false"); got != 2 {
		t.Fatalf("session-ID path full handshakes: %v", got)
	}
	withTickets := base()
	withTickets.SessionTicketsDisabled = false
	withTickets.ClientSessionCache = tls.NewLRUClientSessionCache(1) // Go sends session_ticket only with a cache
	if _, err := handshake(t, f, withTickets); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, f, &tls.Config{RootCAs: f.ca.pool, ServerName: "a.example.com"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "crypto/tls handshakes counted", func() bool {
		return f.kindCount(t, "tls12_ticket", "false") == 1 && f.kindCount(t, "tls13_psk", "false") == 1
	})
	for kind, want := range map[string]float64{"tls12_ticketless": 2, "tls12_ticket": 1, "tls13": 1} {
		if v, _ := metricSum(t, f.reg, "meshgate_tls_client_hellos_total", map[string]string{"kind": kind}); v != want {
			t.Errorf("client_hellos_total{kind=%s} = %v, want %v", kind, v, want)
		}
	}
}

// TestSessionIDPathOpenSSL: a real ticketless OpenSSL client resumes its
// session by ID through the server, and the resumption is counted.
func TestSessionIDPathOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not installed (hack/install-deps.sh): %v", err)
	}
	f := sessionIDFixture(t)
	sess := filepath.Join(t.TempDir(), "s.pem")
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, append([]string{"s_client", "-connect", f.httpsAddr(), "-tls1_2", "-no_ticket", "-servername", "a.example.com", "-ign_eof"}, args...)...)
		cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run("-sess_out", sess); !strings.Contains(out, "New, TLSv1.2") || !strings.Contains(out, "HTTP/1.1 200") {
		t.Fatalf("first:\n%s", out)
	}
	if out := run("-sess_in", sess); !strings.Contains(out, "Reused, TLSv1.2") || !strings.Contains(out, "HTTP/1.1 200") {
		t.Fatalf("resume:\n%s", out)
	}
	if got := f.kindCount(t, "session_id", "true"); got != 1 {
		t.Fatalf("session-ID resumptions counted: %v", got)
	}
}

// TestSessionIDPathPolicies: which hosts the path serves.
func TestSessionIDPathPolicies(t *testing.T) {
	ca := newCA(t)
	cert := ca.leaf(t, "a.example.com")
	ms := &mapSessions{}
	tc := &tlsConfigs{sessionIDs: ms}
	for _, c := range []struct {
		name string
		mod  func(*routing.TLSPolicy)
		want bool
	}{
		{"default", func(*routing.TLSPolicy) {}, true},
		{"ticket keys still issue session IDs", func(p *routing.TLSPolicy) { p.SessionMode = routing.SessionTicketKeys }, true},
		{"resumption off", func(p *routing.TLSPolicy) { p.SessionMode = routing.SessionOff }, false},
		{"TLS 1.3 only", func(p *routing.TLSPolicy) { p.MinVersion = tls.VersionTLS13 }, false},
		{"CBC suites only", func(p *routing.TLSPolicy) {
			p.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
		}, false},
	} {
		p := routing.DefaultPolicy()
		c.mod(p)
		got := tc.buildTLS12(&routing.TLSHost{Name: "a.example.com", Certificate: cert, Policy: p})
		if (got != nil) != c.want {
			t.Errorf("%s: config %v, want %v", c.name, got != nil, c.want)
		}
		if got != nil && got.ServesTLS13 != (p.MaxVersion >= tls.VersionTLS13) {
			t.Errorf("%s: ServesTLS13 %v", c.name, got.ServesTLS13)
		}
	}
	if ms.hosts != 2 {
		t.Fatalf("caches built for %d hosts, want 2", ms.hosts)
	}
}
