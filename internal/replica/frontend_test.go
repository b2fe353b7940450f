package replica

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestReplicaGatewayFrontends follows tables whose Gateways have addresses
// of their own: the replica binds each frontend when a table brings it,
// routes the same name to each Gateway's backend with its certificate,
// resumes TLS sessions there as on its own listener, serves a Gateway's
// plain HTTP listener on a port of its own beside its TLS port, and
// closes a frontend when a table drops it.
func TestReplicaGatewayFrontends(t *testing.T) {
	tlsPort, httpPort := uint16(testkit.FreePort(t, "tcp")), uint16(testkit.FreePort(t, "tcp"))
	a1 := netip.AddrPortFrom(netip.MustParseAddr("127.0.83.1"), tlsPort)
	a2 := netip.AddrPortFrom(netip.MustParseAddr("127.0.83.2"), tlsPort)
	a1plain := netip.AddrPortFrom(a1.Addr(), httpPort)
	c1, c2 := selfSigned(t, "app.example.com"), selfSigned(t, "app.example.com")
	fe1, fe2, fe1plain := table(0, c1, backend(t, "g1")), table(0, c2, backend(t, "g2")), table(0, nil, backend(t, "g1-plain"))
	fe1.Kind, fe2.Kind, fe1plain.Kind = routing.FrontendTLS, routing.FrontendTLS, routing.FrontendHTTP
	fe1plain.TLS = routing.TLSHosts{}
	withFrontends := func(gen uint64, fes map[netip.AddrPort]*routing.Table) *routing.Table {
		tb := table(gen, selfSigned(t, "app.example.com"), backend(t, "own"))
		tb.Frontends = fes
		return tb
	}
	var tables routing.Holder
	tables.Store(withFrontends(1, map[netip.AddrPort]*routing.Table{a1: fe1, a2: fe2, a1plain: fe1plain}))
	r := standalone(t, &tables, 1)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()

	for _, c := range []struct {
		addr netip.AddrPort
		cert *tls.Certificate
		want string
	}{{a1, c1, "g1"}, {a2, c2, "g2"}} {
		ln := r.FrontendAddr(c.addr)
		if ln == nil {
			t.Fatalf("frontend %s not bound", c.addr)
		}
		roots := x509.NewCertPool()
		roots.AddCert(c.cert.Leaf) // only this Gateway's certificate verifies
		cfg := &tls.Config{RootCAs: roots, ServerName: "app.example.com", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		for i, wantResumed := range []bool{false, true} {
			got, resumed := getOver(t, ln.String(), cfg)
			if got != c.want || resumed != wantResumed {
				t.Errorf("%s connection %d: body %q resumed %v, want %q resumed %v", c.addr, i, got, resumed, c.want, wantResumed)
			}
		}
	}

	// One client session cache across both Gateways (it keeps one session
	// per server name, the last one issued): a session issued under g1's
	// certificate must not resume on g2's address nor g2's on g1's
	// (sessions are bound to the certificate they were issued for); g1's
	// own session resumes on g1.
	shared := &tls.Config{InsecureSkipVerify: true, ServerName: "app.example.com", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	for i, c := range []struct {
		addr        netip.AddrPort
		want        string
		wantResumed bool
	}{{a1, "g1", false}, {a2, "g2", false}, {a1, "g1", false}, {a1, "g1", true}} {
		got, resumed := getOver(t, r.FrontendAddr(c.addr).String(), shared)
		if got != c.want || resumed != c.wantResumed {
			t.Errorf("shared cache, connection %d to %s: body %q resumed %v, want %q resumed %v", i, c.addr, got, resumed, c.want, c.wantResumed)
		}
	}

	plain := r.FrontendAddr(a1plain)
	if plain == nil || plain.(*net.TCPAddr).AddrPort() != a1plain {
		t.Fatalf("plain HTTP frontend %s bound %v", a1plain, plain)
	}
	if got := getPlain(t, plain.String()); got != "g1-plain" {
		t.Errorf("plain HTTP frontend %s answered %q", a1plain, got)
	}

	tables.Store(withFrontends(2, map[netip.AddrPort]*routing.Table{a1: fe1}))
	if _, err := r.Applied().Wait(wctx, func(tb *routing.Table) bool { return tb.Generation == 2 }); err != nil {
		t.Fatal(err)
	}
	if r.FrontendAddr(a2) != nil || r.FrontendAddr(a1plain) != nil {
		t.Fatal("frontend the table dropped still bound")
	}
	if c, err := net.DialTimeout("tcp", plain.String(), time.Second); err == nil {
		c.Close()
		t.Fatal("dropped plain HTTP frontend still accepts")
	}
	if r.FrontendAddr(a1) == nil {
		t.Fatal("remaining frontend closed")
	}
}

// standalone runs a replica without a mesh on tables until the test
// ends, and returns once it has applied generation gen.
func standalone(t *testing.T, tables *routing.Holder, gen uint64) *Replica {
	t.Helper()
	r, err := New(Config{Tables: tables, NodeName: "r1", HTTPSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		ShutdownGrace: 5 * time.Second, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	runReplica(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Applied().Wait(ctx, func(tb *routing.Table) bool { return tb.Generation == gen }); err != nil {
		t.Fatal(err)
	}
	return r
}

// getPlain sends GET / for app.example.com over a new plain connection to
// addr and returns the body.
func getPlain(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return getOn(t, conn)
}

// getOver sends GET / for app.example.com over a new TLS connection to
// addr and returns the body and whether the handshake resumed.
func getOver(t *testing.T, addr string, cfg *tls.Config) (string, bool) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	body := getOn(t, conn)
	return body, conn.ConnectionState().DidResume
}

// getOn sends GET / for app.example.com on conn, closes it and returns
// the body.
func getOn(t *testing.T, conn net.Conn) string {
	t.Helper()
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(conn)
	_, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	return body
}
