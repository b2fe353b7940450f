package server

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/testkit"
)

// handshake dials the HTTPS listener with the given SNI and ALPN offer.
func handshake(t testing.TB, f *fixture, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", f.httpsAddr(), cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	if cfg.ClientSessionCache != nil && c.ConnectionState().Version == tls.VersionTLS13 {
		// TLS 1.3 tickets follow the handshake; a short read takes them in.
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = c.Read(make([]byte, 1))
	}
	return c.ConnectionState(), nil
}

func TestSNICertificateSelection(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		sni    string
		wantCN string
	}{
		{"a.example.com", "a.example.com"},
		{"A.Example.COM", "a.example.com"},
		{"x.wild.example.com", "*.wild.example.com"},
		{"x.y.wild.example.com", "default.example.com"},
		{"wild.example.com", "default.example.com"},
		{"unknown.example.org", "default.example.com"},
		{"", "default.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.sni, func(t *testing.T) {
			cs, err := handshake(t, f, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			if cn := cs.PeerCertificates[0].Subject.CommonName; cn != tc.wantCN {
				t.Fatalf("served %q, want %q", cn, tc.wantCN)
			}
		})
	}
	t.Run("verified chain", func(t *testing.T) {
		if _, err := handshake(t, f, &tls.Config{ServerName: "q.wild.example.com", RootCAs: f.ca.pool}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no default certificate", func(t *testing.T) {
		tbl := f.newTable(2)
		tbl.TLS.Default = nil
		f.store(tbl)
		defer f.store(f.newTable(3))
		if _, err := handshake(t, f, &tls.Config{ServerName: "unknown.example.org", InsecureSkipVerify: true}); err == nil {
			t.Fatal("handshake for an unknown name succeeded without a default certificate")
		}
		if _, err := handshake(t, f, &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool}); err != nil {
			t.Fatalf("known name after swap: %v", err)
		}
	})
	t.Run("certificate swap", func(t *testing.T) {
		tbl := f.newTable(4)
		tbl.TLS.Exact["a.example.com"] = tlsHost("a.example.com", f.ca.leaf(t, "a.example.com", "rotated.example.com"))
		f.store(tbl)
		cs, err := handshake(t, f, &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool})
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.PeerCertificates[0].DNSNames; len(got) != 2 {
			t.Fatalf("served old certificate %v after table swap", got)
		}
	})
}

func TestALPN(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name  string
		offer []string
		want  string
	}{
		{"h2 preferred", []string{"h2", "http/1.1"}, "h2"},
		{"http/1.1 only", []string{"http/1.1"}, "http/1.1"},
		{"no ALPN", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := handshake(t, f, &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool, NextProtos: tc.offer})
			if err != nil {
				t.Fatal(err)
			}
			if cs.NegotiatedProtocol != tc.want {
				t.Fatalf("negotiated %q, want %q", cs.NegotiatedProtocol, tc.want)
			}
		})
	}
	for _, h2 := range []bool{true, false} {
		status, e, proto := get(t, f.client(t, h2), "https://a.example.com/alpn")
		want := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]
		if status != 200 || e == nil || proto != want {
			t.Fatalf("h2=%v: status %d proto %s, want 200 %s", h2, status, proto, want)
		}
		if e.Hdr.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("X-Forwarded-Proto %q", e.Hdr.Get("X-Forwarded-Proto"))
		}
	}
}

func TestPolicyAndResumption(t *testing.T) {
	f := newFixture(t, nil)
	tbl := f.newTable(2)
	p12 := routing.DefaultPolicy()
	p12.MaxVersion = tls.VersionTLS12
	off := routing.DefaultPolicy()
	off.SessionMode = routing.SessionOff
	tbl.TLS.Exact["tls12.example.com"] = &routing.TLSHost{Name: "tls12.example.com", Certificate: f.certs["a"], Policy: p12}
	tbl.TLS.Exact["off.example.com"] = &routing.TLSHost{Name: "off.example.com", Certificate: f.certs["a"], Policy: off}
	f.store(tbl)

	tests := []struct {
		sni         string
		wantVersion uint16
		wantResumed bool
	}{
		{"a.example.com", tls.VersionTLS13, true},
		{"tls12.example.com", tls.VersionTLS12, true},
		{"off.example.com", tls.VersionTLS13, false},
	}
	for _, tc := range tests {
		t.Run(tc.sni, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			first, err := handshake(t, f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if first.Version != tc.wantVersion || first.DidResume {
				t.Fatalf("first: version %x resumed %v", first.Version, first.DidResume)
			}
			second, err := handshake(t, f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if second.DidResume != tc.wantResumed {
				t.Fatalf("second handshake resumed=%v, want %v", second.DidResume, tc.wantResumed)
			}
		})
	}
	resumed, _ := testkit.MetricSum(t, f.reg, "meshgate_tls_handshakes_total", map[string]string{"resumed": "true"})
	v12, _ := testkit.MetricSum(t, f.reg, "meshgate_tls_handshakes_total", map[string]string{"version": "1.2", "resumed": "true"})
	if resumed < 2 || v12 != 1 {
		t.Fatalf("resumed handshakes metric %v (TLS 1.2: %v), want ≥2 and 1", resumed, v12)
	}
}

// recordingSessions is a tlsconfig.Sessions that records its calls by the
// host's certificate and disables tickets for the certificate off.
type recordingSessions struct {
	mu    sync.Mutex
	off   []byte
	hosts map[string]int
	calls int
}

func (r *recordingSessions) ConfigureTLS(cfg *tls.Config, h sessionmesh.Host) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[string(h.Leaf)]++
	r.calls++
	cfg.SessionTicketsDisabled = bytes.Equal(h.Leaf, r.off)
}

func TestSessionConfigurer(t *testing.T) {
	rec := &recordingSessions{hosts: map[string]int{}}
	f := newFixtureWith(t, fixtureOpts{sessions: rec}, nil)
	rec.mu.Lock()
	rec.off, rec.hosts, rec.calls = f.certs["a"].Certificate[0], map[string]int{}, 0
	rec.mu.Unlock()
	f.store(f.newTable(2))
	// Built at publish, before any handshake: once per TLS host.
	rec.mu.Lock()
	calls, hosts := rec.calls, len(rec.hosts)
	rec.mu.Unlock()
	if calls != 4 || hosts != 4 {
		t.Fatalf("publishing configured %d hosts in %d calls, want 4 in 4", hosts, calls)
	}
	cache := tls.NewLRUClientSessionCache(4)
	for range 5 {
		cs, err := handshake(t, f, &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool, ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		if cs.DidResume {
			t.Fatal("resumed although the configurer disabled tickets")
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.calls != 4 {
		t.Fatalf("handshakes configured hosts again: %d calls", rec.calls)
	}
}

func TestPreTLS(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.PreTLS = func(c net.Conn, tbl *routing.Table) (net.Conn, bool) {
			if tbl == nil {
				return c, false
			}
			// Take connections whose first byte is not a TLS handshake
			// record; hand the others back with the byte replayed.
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil {
				c.Close()
				return nil, true
			}
			if b[0] != 0x16 {
				go func() {
					defer c.Close()
					_, _ = c.Write([]byte("taken\n"))
				}()
				return nil, true
			}
			return &replayConn{Conn: c, first: b[:]}, false
		}
	})
	if _, err := handshake(t, f, &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool}); err != nil {
		t.Fatalf("handshake through PreTLS: %v", err)
	}
	c, err := net.Dial("tcp", f.httpsAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("x"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	if string(buf[:n]) != "taken\n" {
		t.Fatalf("PreTLS-owned connection got %q", buf[:n])
	}
}

// replayConn returns first before reading from Conn.
type replayConn struct {
	net.Conn
	first []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// TestTableSwapUnderLoad swaps tables (new TLS host pointers, new backend
// pointers) while clients open fresh TLS connections: no request may fail.
func TestTableSwapUnderLoad(t *testing.T) {
	f := newFixture(t, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures, oks atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := f.client(t, false)
			tr := c.Transport.(*http.Transport)
			tr.DisableKeepAlives = true // a handshake per request
			for i := 0; i < 60; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("https://a.example.com/swap")
				if err != nil {
					failures.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					continue
				}
				oks.Add(1)
			}
		}()
	}
	// A new table every 2 ms while the clients run: a paced load, the
	// ticker sets the rate of swaps and waits for nothing.
	pace := time.NewTicker(2 * time.Millisecond)
	defer pace.Stop()
	for gen := uint64(2); gen < 40; gen++ {
		f.store(f.newTable(gen))
		<-pace.C
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || oks.Load() == 0 {
		t.Fatalf("%d failed, %d ok during table swaps", failures.Load(), oks.Load())
	}
}
