package replica

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// lineEcho is a TCP backend that answers each connection's first line
// with "echo:" and that line, then closes it.
func lineEcho(t *testing.T) string {
	t.Helper()
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
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, "echo:"+line)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestReplicaTLSRouteTerminate serves a TLSRoute in mode Terminate on the
// replica's own TLS listener and on a Gateway frontend port of its own:
// the handshake uses the listener's certificate with no ALPN protocol,
// the decrypted bytes reach the TCP backend and its answer comes back,
// sessions resume there (the session mesh applies as for HTTPS), HTTP for
// another name on the same listener is still served, and the real openssl
// client gets the backend's answer too.
func TestReplicaTLSRouteTerminate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl binary required (apt-get install -y openssl): %v", err)
	}
	cert := selfSigned(t, "tls.example.com")
	be := &routing.Backend{Name: "app/plain:3000", Endpoints: []string{lineEcho(t)}}
	terminate := func(tb *routing.Table) *routing.Table {
		tb.TLS.Exact["tls.example.com"] = &routing.TLSHost{Name: "tls.example.com", Certificate: cert, Policy: routing.DefaultPolicy(), Stream: true}
		tb.Terminated = map[string]*routing.Backend{"tls.example.com": be}
		return tb
	}
	fe := netip.AddrPortFrom(netip.MustParseAddr("127.0.83.5"), uint16(testkit.FreePort(t, "tcp")))
	ft := terminate(table(0, selfSigned(t, "app.example.com"), backend(t, "frontend-http")))
	ft.Kind = routing.FrontendTLS
	root := terminate(table(1, selfSigned(t, "app.example.com"), backend(t, "own-http")))
	root.Frontends = map[netip.AddrPort]*routing.Table{fe: ft}
	var tables routing.Holder
	tables.Store(root)
	r := standalone(t, &tables, 1)

	for _, c := range []struct {
		name, addr, http string
	}{{"own listener", r.HTTPSAddr().String(), "own-http"}, {"frontend " + fe.String(), r.FrontendAddr(fe).String(), "frontend-http"}} {
		cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "tls.example.com", NextProtos: []string{"h2", "http/1.1"},
			ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		for i, wantResumed := range []bool{false, true} {
			got, cs := streamOver(t, c.addr, cfg, "hello")
			if got != "echo:hello\n" {
				t.Errorf("%s connection %d: backend answered %q", c.name, i, got)
			}
			if cs.DidResume != wantResumed || cs.NegotiatedProtocol != "" {
				t.Errorf("%s connection %d: resumed %v, ALPN %q; want resumed %v and no ALPN", c.name, i, cs.DidResume, cs.NegotiatedProtocol, wantResumed)
			}
			if string(cs.PeerCertificates[0].Raw) != string(cert.Certificate[0]) {
				t.Errorf("%s: not the listener's certificate", c.name)
			}
		}
		if got, _ := getOver(t, c.addr, &tls.Config{InsecureSkipVerify: true, ServerName: "app.example.com"}); got != c.http {
			t.Errorf("%s: HTTP for app.example.com answered %q, want %q", c.name, got, c.http)
		}

		octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(octx, openssl, "s_client", "-connect", c.addr, "-servername", "tls.example.com", "-quiet")
		cmd.Stdin = strings.NewReader("from-openssl\n")
		out, err := cmd.Output()
		ocancel()
		if err != nil || !strings.Contains(string(out), "echo:from-openssl") {
			t.Errorf("%s: openssl s_client: %v, output %q", c.name, err, out)
		}
	}
}

// streamOver writes line over a new TLS connection to addr and returns
// everything read until the server closes, and the connection's state.
func streamOver(t *testing.T, addr string, cfg *tls.Config, line string) (string, tls.ConnectionState) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(conn)
	return string(raw), conn.ConnectionState()
}
