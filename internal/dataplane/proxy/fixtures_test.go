package proxy

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/meshgate/meshgate/internal/dataplane/http1"
	"github.com/meshgate/meshgate/internal/routing"
)

// echo is what a test backend reports about the request it received.
type echo struct {
	Backend string      `json:"backend"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	Method  string      `json:"method"`
	Header  http.Header `json:"header"`
	Body    int         `json:"body"`
}

// newBackend starts an HTTP backend that answers every request with an echo
// JSON naming itself.
func newBackend(t testing.TB, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{Backend: name, Host: r.Host, Path: r.URL.Path,
			Method: r.Method, Header: r.Header, Body: int(n)})
	}))
	t.Cleanup(s.Close)
	return s
}

func addrOf(s *httptest.Server) string { return s.Listener.Addr().String() }

// deadAddr returns a 127.0.0.1 address nobody listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func be(name string, eps ...string) *routing.Backend {
	return &routing.Backend{Name: name, Endpoints: eps}
}

func prefix(path string, b *routing.Backend) routing.Route {
	return routing.Route{PathType: routing.PathPrefix, Path: path, Backend: b, Source: "default/test"}
}

func exact(path string, b *routing.Backend) routing.Route {
	return routing.Route{PathType: routing.PathExact, Path: path, Backend: b, Source: "default/test"}
}

func vhost(name string, routes ...routing.Route) *routing.VirtualHost {
	return &routing.VirtualHost{Name: name, Routes: routes}
}

// table builds a Table with the given exact-host virtual hosts.
func table(gen uint64, hosts ...*routing.VirtualHost) *routing.Table {
	t := &routing.Table{Generation: gen, HTTP: routing.HTTPRoutes{
		Hosts:     map[string]*routing.VirtualHost{},
		Wildcards: map[string]*routing.VirtualHost{},
	}}
	for _, vh := range hosts {
		switch {
		case vh.Name == "":
			t.HTTP.CatchAll = vh
		case len(vh.Name) > 2 && vh.Name[:2] == "*.":
			t.HTTP.Wildcards[vh.Name[2:]] = vh
		default:
			t.HTTP.Hosts[vh.Name] = vh
		}
	}
	return t
}

// tables stands in for the data plane's table subscriber: Store applies
// the table to every attached handler before it returns.
type tables struct {
	mu  sync.Mutex
	cur *routing.Table
	hs  []*Handler
}

func (tb *tables) Store(t *routing.Table) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.cur = t
	for _, h := range tb.hs {
		h.Apply(t)
	}
}

func (tb *tables) Load() *routing.Table {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.cur
}

func (tb *tables) attach(h *Handler) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.hs = append(tb.hs, h)
	if tb.cur != nil {
		h.Apply(tb.cur)
	}
}

// frontEnd is the Handler under test served by meshgate's HTTP/1.1 engine
// on a loopback listener.
type frontEnd struct {
	URL string // "http://127.0.0.1:port"
}

// newProxy starts the Handler under test behind the HTTP/1.1 engine.
func newProxy(t testing.TB, tb *tables, cfg Config) (*Handler, *frontEnd) {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return h, serveProxy(t, tb, h, ln)
}

// serveProxy serves h behind the HTTP/1.1 engine on ln (which a test may
// wrap to watch the server's side of its connections) until cleanup.
func serveProxy(t testing.TB, tb *tables, h *Handler, ln net.Listener) *frontEnd {
	t.Helper()
	tb.attach(h)
	srv, err := http1.NewServer(http1.ServerConfig{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }() // ends when ln is closed at cleanup
	t.Cleanup(func() {
		_ = ln.Close()
		srv.Close()
		h.CloseIdleConnections()
	})
	return &frontEnd{URL: "http://" + ln.Addr().String()}
}

// do sends a request with the given Host to the front end and decodes the
// echo when the backend answered.
func do(t testing.TB, c *http.Client, method, url, host string, body io.Reader) (*http.Response, *echo) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, url, host, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e echo
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("decode echo: %v (%q)", err, raw)
		}
		return resp, &e
	}
	return resp, nil
}

// noRedirect is a client that returns redirects instead of following them.
func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
