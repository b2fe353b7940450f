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
// leaves the list while the other keeps serving. A third port on the
// first address (a TLS listener on a port of its own) is routed by its own
// table, not by the address's other TLS port.
func TestFrontendListeners(t *testing.T) {
	f := newFixture(t, nil)
	tlsPort, httpPort, otherPort := frontendPort(t), frontendPort(t), frontendPort(t)
	at := func(ip string, port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(ip), port) }
	c1, c2, c3 := f.ca.leaf(t, "shared.example.com"), f.ca.leaf(t, "shared.example.com"), f.ca.leaf(t, "shared.example.com")
	kinded := func(ft *routing.Table, k routing.FrontendKind) *routing.Table { ft.Kind = k; return ft }
	g1, g2 := frontendTable(t, "g1", c1), frontendTable(t, "g2", c2)
	g1plain, g2plain := *g1, *g2
	tbl := f.newTable(2)
	tbl.Frontends = map[netip.AddrPort]*routing.Table{
		at("127.0.82.1", tlsPort): kinded(g1, routing.FrontendTLS), at("127.0.82.1", httpPort): kinded(&g1plain, routing.FrontendHTTP),
		at("127.0.82.2", tlsPort): kinded(g2, routing.FrontendTLS), at("127.0.82.2", httpPort): kinded(&g2plain, routing.FrontendHTTP),
		at("127.0.82.1", otherPort): kinded(frontendTable(t, "g1-other", c3), routing.FrontendTLS),
	}
	f.store(tbl)
	ctx := context.Background()
	if err := f.srv.SetFrontends(ctx, FrontendsOf(tbl)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ip   string
		tls  uint16
		name string
		cert *tls.Certificate
	}{{"127.0.82.1", tlsPort, "g1", c1}, {"127.0.82.2", tlsPort, "g2", c2}, {"127.0.82.1", otherPort, "g1-other", c3}} {
		a := at(c.ip, c.tls)
		https := f.srv.FrontendAddr(a)
		if https == nil {
			t.Fatalf("%s: not bound", a)
		}
		if got := https.(*net.TCPAddr).AddrPort(); got != a {
			t.Fatalf("%s: TLS listener bound %s", a, got)
		}
		body, leaf := frontendGet(t, f, https, "shared.example.com")
		if body != c.name || !bytes.Equal(leaf, c.cert.Certificate[0]) {
			t.Errorf("%s over TLS: body %q, own certificate %v", a, body, bytes.Equal(leaf, c.cert.Certificate[0]))
		}
		// a.example.com is the replica's own TLS host, and a frontend has
		// no default certificate: the connection is closed, without a TLS
		// alert (what Gateway API clients and the suite expect).
		conn, err := tls.Dial("tcp", https.String(), &tls.Config{RootCAs: f.ca.pool, ServerName: "a.example.com"})
		if err == nil {
			conn.Close()
			t.Errorf("%s: handshake for a name of the replica's own table succeeded", a)
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: refused with %v, want the connection closed (EOF or reset)", a, err)
		}
	}
	for _, c := range []struct{ ip, name string }{{"127.0.82.1", "g1"}, {"127.0.82.2", "g2"}} {
		plain := f.srv.FrontendAddr(at(c.ip, httpPort))
		if plain == nil {
			t.Fatalf("%s: plain HTTP not bound", c.ip)
		}
		if body, _ := frontendGet(t, f, plain, ""); body != c.name {
			t.Errorf("%s over HTTP: body %q", c.ip, body)
		}
	}
	// The replica's own listener does not see the frontends' hosts: the
	// name gets the table's default certificate.
	if _, leaf := frontendGet(t, f, f.srv.HTTPSAddr(), "default.example.com"); !bytes.Equal(leaf, f.certs["default"].Certificate[0]) {
		t.Error("the replica's own listener did not present its default certificate")
	}
	if n := testkit.MetricValue(t, f.reg, "meshgate_listener_connections_rejected_total", map[string]string{"listener": "https", "reason": "no_certificate"}); n != 3 {
		t.Errorf("no_certificate refusals counted %v, want 3", n)
	}
	conn, err := tls.Dial("tcp", f.httpsAddr(), &tls.Config{InsecureSkipVerify: true, ServerName: "shared.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if leaf := conn.ConnectionState().PeerCertificates[0].Raw; bytes.Equal(leaf, c1.Certificate[0]) || bytes.Equal(leaf, c2.Certificate[0]) {
		t.Error("the replica's own listener presented a frontend's certificate")
	}
	conn.Close()

	gone := f.srv.FrontendAddr(at("127.0.82.2", tlsPort))
	tbl2 := f.newTable(3)
	tbl2.Frontends = map[netip.AddrPort]*routing.Table{}
	for a, ft := range tbl.Frontends {
		if a.Addr() == netip.MustParseAddr("127.0.82.1") {
			tbl2.Frontends[a] = ft
		}
	}
	f.store(tbl2)
	if err := f.srv.SetFrontends(ctx, FrontendsOf(tbl2)); err != nil {
		t.Fatal(err)
	}
	if f.srv.FrontendAddr(at("127.0.82.2", tlsPort)) != nil || f.srv.FrontendAddr(at("127.0.82.2", httpPort)) != nil {
		t.Fatal("removed frontend still listed")
	}
	if c, err := net.DialTimeout("tcp", gone.String(), time.Second); err == nil {
		c.Close()
		t.Fatal("removed frontend still accepts")
	}
	if body, _ := frontendGet(t, f, f.srv.FrontendAddr(at("127.0.82.1", tlsPort)), "shared.example.com"); body != "g1" {
		t.Errorf("remaining frontend answered %q", body)
	}

	// A port whose listeners change from TLS to HTTP is rebound with the
	// other server.
	tbl3 := f.newTable(4)
	tbl3.Frontends = map[netip.AddrPort]*routing.Table{at("127.0.82.1", otherPort): kinded(frontendTable(t, "g1-plain", c3), routing.FrontendHTTP)}
	f.store(tbl3)
	if err := f.srv.SetFrontends(ctx, FrontendsOf(tbl3)); err != nil {
		t.Fatal(err)
	}
	if body, _ := frontendGet(t, f, f.srv.FrontendAddr(at("127.0.82.1", otherPort)), ""); body != "g1-plain" {
		t.Errorf("port turned plain HTTP answered %q", body)
	}
}

// frontendPort returns a port free on 127.0.0.1 a moment ago, for a
// frontend on a 127.0.82.x address (where no other test binds ephemeral
// ports).
func frontendPort(t *testing.T) uint16 { return uint16(testkit.FreePort(t, "tcp")) }

// TestFrontendsBoundAtStart checks that frontends set before Start are
// bound by Start, on their ports, that a frontend of a kind whose replica
// listener is disabled is not bound, and that a frontend whose address
// cannot be bound leaves the others serving.
func TestFrontendsBoundAtStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.82.9:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := uint16(busy.Addr().(*net.TCPAddr).Port)
	srv, err := New(Config{Handler: newHandler(t), HTTPSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ok := netip.AddrPortFrom(netip.MustParseAddr("127.0.82.8"), port)
	plain := netip.AddrPortFrom(netip.MustParseAddr("127.0.82.8"), frontendPort(t))
	taken := netip.AddrPortFrom(netip.MustParseAddr("127.0.82.9"), port)
	fes := []Frontend{{ok, routing.FrontendTLS}, {taken, routing.FrontendTLS}, {plain, routing.FrontendHTTP}}
	if err := srv.SetFrontends(context.Background(), fes); err != nil {
		t.Fatalf("before Start: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if a := srv.FrontendAddr(ok); a == nil || a.(*net.TCPAddr).AddrPort() != ok {
		t.Fatalf("frontend %s bound %v", ok, a)
	}
	if srv.FrontendAddr(plain) != nil {
		t.Error("plain HTTP frontend listener without the replica's own")
	}
	if srv.FrontendAddr(taken) != nil {
		t.Error("a busy address is listed as bound")
	}
	if err := srv.SetFrontends(context.Background(), fes); err == nil {
		t.Error("no error for the busy frontend address")
	}
}
