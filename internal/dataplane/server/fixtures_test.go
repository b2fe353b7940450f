package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/dataplane/proxy"
	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/testkit"
)

// testCA is a throw-away certificate authority (testkit's), with the
// forms these tests use.
type testCA struct {
	ca   *testkit.CA
	pool *x509.CertPool
	pem  []byte
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	ca := testkit.NewCA(t, "meshgate test CA")
	return &testCA{ca: ca, pool: ca.Pool, pem: ca.Cert.CertPEM}
}

// leaf issues a serving certificate for names (the first is the CN).
func (ca *testCA) leaf(t testing.TB, names ...string) *tls.Certificate {
	t.Helper()
	return ca.ca.Issue(t, names...)
}

// newHandler returns a proxy with no table (every request: 503).
func newHandler(t testing.TB) *proxy.Handler {
	t.Helper()
	h, err := proxy.New(proxy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newSessions returns a local-only session mesh node (no peers) with its
// metrics on reg, running until the test ends.
func newSessions(t testing.TB, reg prometheus.Registerer) *sessionmesh.Node {
	t.Helper()
	n, err := sessionmesh.New(sessionmesh.Config{NodeName: "server-test", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("session node: %v", err)
		}
	})
	return n
}

func tlsHost(name string, c *tls.Certificate) *routing.TLSHost {
	return &routing.TLSHost{Name: name, Certificate: c, Policy: routing.DefaultPolicy()}
}

// echo is what the test backend reports.
type echo struct {
	Host string      `json:"host"`
	Path string      `json:"path"`
	Hdr  http.Header `json:"header"`
}

// newBackend starts an HTTP backend answering an echo JSON; handler, if
// set, runs first and may answer itself (returning true).
func newBackend(t testing.TB, handler func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if handler != nil && handler(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{Host: r.Host, Path: r.URL.Path, Hdr: r.Header})
	}))
	t.Cleanup(s.Close)
	return s
}

// fixture is a running Server with certificates for a.example.com,
// *.wild.example.com and a default certificate, all routed to backend.
type fixture struct {
	ca       *testCA
	sessions tlsconfig.Sessions
	proxy    *proxy.Handler
	srv      *Server
	reg      *prometheus.Registry
	backend  *httptest.Server
	certs    map[string]*tls.Certificate
	handler  atomic.Pointer[http.HandlerFunc] // replaces the echo when set
}

// store publishes t to the server and the proxy as the data plane's table
// subscriber does: derived state built before store returns.
func (f *fixture) store(t *routing.Table) {
	f.proxy.Apply(t)
	f.srv.Apply(tlsconfig.Build(t, f.sessions))
}

// fixtureOpts replaces parts of the fixture's wiring.
type fixtureOpts struct {
	// sessions defaults to a local session mesh node, without its
	// session-ID path unless sessionIDs is set.
	sessions   tlsconfig.Sessions
	sessionIDs bool
	proxy      proxy.Config // Registerer is set by the fixture
}

// ticketsOnly hides a node's session-ID path (tlsconfig.SessionIDs), so
// every client stays on crypto/tls.
type ticketsOnly struct{ n *sessionmesh.Node }

func (s ticketsOnly) ConfigureTLS(cfg *tls.Config, h sessionmesh.Host) { s.n.ConfigureTLS(cfg, h) }

// setBackend makes the backend run h instead of answering an echo.
func (f *fixture) setBackend(h http.HandlerFunc) { f.handler.Store(&h) }

// newTable builds the fixture table routing every host to backend.
func (f *fixture) newTable(gen uint64) *routing.Table {
	b := &routing.Backend{Name: "default/echo:80", Endpoints: []string{f.backend.Listener.Addr().String()}}
	vh := &routing.VirtualHost{Routes: []routing.Route{{PathType: routing.PathPrefix, Path: "/", Backend: b}}}
	secure := &routing.VirtualHost{Name: "secure.example.com", TLS: true, SSLRedirect: true, Routes: vh.Routes}
	return &routing.Table{
		Generation: gen,
		HTTP: routing.HTTPRoutes{
			Hosts:    map[string]*routing.VirtualHost{"secure.example.com": secure},
			CatchAll: vh,
		},
		TLS: routing.TLSHosts{
			Exact: map[string]*routing.TLSHost{
				"a.example.com":      tlsHost("a.example.com", f.certs["a"]),
				"secure.example.com": tlsHost("secure.example.com", f.certs["secure"]),
			},
			Wildcards: map[string]*routing.TLSHost{"wild.example.com": tlsHost("*.wild.example.com", f.certs["wild"])},
			Default:   tlsHost("", f.certs["default"]),
		},
	}
}

// newFixture starts a server; mod may adjust the Config before New.
func newFixture(t testing.TB, mod func(*Config)) *fixture {
	return newFixtureWith(t, fixtureOpts{}, mod)
}

// newFixtureWith starts a server wired as opts say.
func newFixtureWith(t testing.TB, opts fixtureOpts, mod func(*Config)) *fixture {
	t.Helper()
	ca := newCA(t)
	f := &fixture{
		ca:  ca,
		reg: prometheus.NewRegistry(),
		certs: map[string]*tls.Certificate{
			"a":       ca.leaf(t, "a.example.com"),
			"secure":  ca.leaf(t, "secure.example.com"),
			"wild":    ca.leaf(t, "*.wild.example.com"),
			"default": ca.leaf(t, "default.example.com"),
		},
	}
	f.backend = newBackend(t, func(w http.ResponseWriter, r *http.Request) bool {
		if h := f.handler.Load(); h != nil {
			(*h)(w, r)
			return true
		}
		return false
	})
	f.sessions = opts.sessions
	if f.sessions == nil {
		n := newSessions(t, f.reg)
		f.sessions = ticketsOnly{n}
		if opts.sessionIDs {
			f.sessions = n
		}
	}
	pc := opts.proxy
	pc.Registerer = f.reg
	var err error
	if f.proxy, err = proxy.New(pc); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Handler:    f.proxy,
		HTTPSAddr:  "127.0.0.1:0",
		HTTPAddr:   "127.0.0.1:0",
		Registerer: f.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.store(f.newTable(1))
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return f
}

func (f *fixture) httpsAddr() string { return f.srv.HTTPSAddr().String() }
func (f *fixture) httpAddr() string  { return f.srv.HTTPAddr().String() }

// client returns an HTTP client that dials the HTTPS listener for every
// host, verifies against the test CA and offers protos via ALPN.
// Idle connections are closed at cleanup so Shutdown does not wait for the
// HTTP/2 GOAWAY grace period.
func (f *fixture) client(t testing.TB, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: f.ca.pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, f.httpsAddr())
		},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get performs GET url and returns status, decoded echo (if JSON) and proto.
func get(t testing.TB, c *http.Client, url string) (int, *echo, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e *echo
	if resp.Header.Get("Content-Type") == "application/json" {
		e = new(echo)
		if err := json.Unmarshal(raw, e); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return resp.StatusCode, e, resp.Proto
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, what, cond)
}
