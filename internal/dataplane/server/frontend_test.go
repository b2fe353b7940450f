package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// frontendTable routes everything to a backend answering name, with
// shared.example.com served by cert.
func frontendTable(t *testing.T, name string, cert *tls.Certificate) *routing.Table {
	be := newBackend(t, func(w http.ResponseWriter, _ *http.Request) bool {
		_, _ = io.WriteString(w, name)
		return true
	})
	b := &routing.Backend{Name: "default/" + name + ":80", Endpoints: []string{be.Listener.Addr().String()}}
	return &routing.Table{
		HTTP: routing.HTTPRoutes{CatchAll: &routing.VirtualHost{Routes: []routing.Route{{PathType: routing.PathPrefix, Path: "/", Backend: b}}}},
		TLS:  routing.TLSHosts{Exact: map[string]*routing.TLSHost{"shared.example.com": tlsHost("shared.example.com", cert)}},
	}
}

// frontendGet sends GET / over a fresh connection to addr (TLS with SNI
// serverName when it is not empty) and returns the body and the server's
// leaf certificate.
func frontendGet(t *testing.T, f *fixture, addr net.Addr, serverName string) (string, []byte) {
	t.Helper()
	var leaf []byte
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: f.ca.pool, ServerName: serverName},
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr.String())
		},
	}
	scheme := "http"
	if serverName != "" {
		scheme = "https"
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(scheme + "://shared.example.com/")
	if err != nil {
		t.Fatalf("GET %s on %s: %v", scheme, addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.TLS != nil {
		leaf = resp.TLS.PeerCertificates[0].Raw
	}
	return string(body), leaf
}

// TestFrontendListeners runs two Gateway frontends beside the replica's
// own listeners: each binds its own address, presents its own certificate
// for the same name, routes to its own backend over TLS and plain HTTP,
// refuses the names only the replica's table serves, and closes when it
// leaves the list while the other keeps serving.
func TestFrontendListeners(t *testing.T) {
	f := newFixture(t, nil)
	a1, a2 := netip.MustParseAddr("127.0.82.1"), netip.MustParseAddr("127.0.82.2")
	c1, c2 := f.ca.leaf(t, "shared.example.com"), f.ca.leaf(t, "shared.example.com")
	tbl := f.newTable(2)
	tbl.Frontends = map[netip.Addr]*routing.Table{a1: frontendTable(t, "g1", c1), a2: frontendTable(t, "g2", c2)}
	f.store(tbl)
	ctx := context.Background()
	if err := f.srv.SetFrontends(ctx, []netip.Addr{a1, a2}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr netip.Addr
		name string
		cert *tls.Certificate
	}{{a1, "g1", c1}, {a2, "g2", c2}} {
		https, plain := f.srv.FrontendHTTPSAddr(c.addr), f.srv.FrontendHTTPAddr(c.addr)
		if https == nil || plain == nil {
			t.Fatalf("%s: listeners %v %v", c.addr, https, plain)
		}
		if got := https.(*net.TCPAddr).AddrPort().Addr(); got != c.addr {
			t.Fatalf("%s: TLS listener bound %s", c.addr, got)
		}
		body, leaf := frontendGet(t, f, https, "shared.example.com")
		if body != c.name || !bytes.Equal(leaf, c.cert.Certificate[0]) {
			t.Errorf("%s over TLS: body %q, own certificate %v", c.addr, body, bytes.Equal(leaf, c.cert.Certificate[0]))
		}
		if body, _ := frontendGet(t, f, plain, ""); body != c.name {
			t.Errorf("%s over HTTP: body %q", c.addr, body)
		}
		// a.example.com is the replica's own TLS host, and a frontend has
		// no default certificate: the connection is closed, without a TLS
		// alert (what Gateway API clients and the suite expect).
		conn, err := tls.Dial("tcp", https.String(), &tls.Config{RootCAs: f.ca.pool, ServerName: "a.example.com"})
		if err == nil {
			conn.Close()
			t.Errorf("%s: handshake for a name of the replica's own table succeeded", c.addr)
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: refused with %v, want the connection closed (EOF or reset)", c.addr, err)
		}
	}
	// The replica's own listener does not see the frontends' hosts: the
	// name gets the table's default certificate.
	if _, leaf := frontendGet(t, f, f.srv.HTTPSAddr(), "default.example.com"); !bytes.Equal(leaf, f.certs["default"].Certificate[0]) {
		t.Error("the replica's own listener did not present its default certificate")
	}
	if n := testkit.MetricValue(t, f.reg, "meshgate_listener_connections_rejected_total", map[string]string{"listener": "https", "reason": "no_certificate"}); n != 2 {
		t.Errorf("no_certificate refusals counted %v, want 2", n)
	}
	conn, err := tls.Dial("tcp", f.httpsAddr(), &tls.Config{InsecureSkipVerify: true, ServerName: "shared.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if leaf := conn.ConnectionState().PeerCertificates[0].Raw; bytes.Equal(leaf, c1.Certificate[0]) || bytes.Equal(leaf, c2.Certificate[0]) {
		t.Error("the replica's own listener presented a frontend's certificate")
	}
	conn.Close()

	gone := f.srv.FrontendHTTPSAddr(a2)
	tbl2 := f.newTable(3)
	tbl2.Frontends = map[netip.Addr]*routing.Table{a1: tbl.Frontends[a1]}
	f.store(tbl2)
	if err := f.srv.SetFrontends(ctx, []netip.Addr{a1}); err != nil {
		t.Fatal(err)
	}
	if f.srv.FrontendHTTPSAddr(a2) != nil || f.srv.FrontendHTTPAddr(a2) != nil {
		t.Fatal("removed frontend still listed")
	}
	if c, err := net.DialTimeout("tcp", gone.String(), time.Second); err == nil {
		c.Close()
		t.Fatal("removed frontend still accepts")
	}
	if body, _ := frontendGet(t, f, f.srv.FrontendHTTPSAddr(a1), "shared.example.com"); body != "g1" {
		t.Errorf("remaining frontend answered %q", body)
	}
}

// TestFrontendsBoundAtStart checks that frontends set before Start are
// bound by Start, on the frontend ports the Config names, and that a
// frontend whose address cannot be bound leaves the others serving.
func TestFrontendsBoundAtStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.82.9:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	srv, err := New(Config{Handler: newHandler(t), HTTPSAddr: "127.0.0.1:0", FrontendHTTPSPort: port})
	if err != nil {
		t.Fatal(err)
	}
	ok, taken := netip.MustParseAddr("127.0.82.8"), netip.MustParseAddr("127.0.82.9")
	if err := srv.SetFrontends(context.Background(), []netip.Addr{ok, taken}); err != nil {
		t.Fatalf("before Start: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if a := srv.FrontendHTTPSAddr(ok); a == nil || a.(*net.TCPAddr).Port != port {
		t.Fatalf("frontend %s bound %v, want port %d", ok, a, port)
	}
	if srv.FrontendHTTPAddr(ok) != nil {
		t.Error("plain HTTP frontend listener without the replica's own")
	}
	if srv.FrontendHTTPSAddr(taken) != nil {
		t.Error("a busy address is listed as bound")
	}
	if err := srv.SetFrontends(context.Background(), []netip.Addr{ok, taken}); err == nil {
		t.Error("no error for the busy frontend address")
	}
}
