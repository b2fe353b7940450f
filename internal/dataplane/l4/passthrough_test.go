package l4

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

func selfSigned(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return *testkit.SelfSigned(t, name)
}

// frontServer is the stand-in for the data plane's TLS listener: each
// connection goes through p.Route in its own goroutine; unrouted ones are
// terminated with the front certificate and answered with "front".
func frontServer(t testing.TB, p *Passthrough, tbl *routing.Table, front tls.Certificate, ln net.Listener) string {
	return tcpServer(t, ln, func(c net.Conn) {
		conn, handled := p.Route(c, tbl)
		if handled {
			return
		}
		s := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{front}})
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		if err := s.Handshake(); err != nil {
			return
		}
		_, _ = s.Write([]byte("front"))
		_ = s.CloseWrite()
		_, _ = io.Copy(io.Discard, s)
	})
}

// backendTLS serves TLS with its own certificate and answers "backend".
func backendTLS(t testing.TB, cert tls.Certificate, ln net.Listener) string {
	return tcpServer(t, tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}), func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte("backend"))
		_ = c.(*tls.Conn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
}

func pool(certs ...tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Leaf)
	}
	return p
}

func TestPassthroughRoutesBySNI(t *testing.T) {
	frontCert, beCert := selfSigned(t, "front.example"), selfSigned(t, "backend.example")
	be := backendTLS(t, beCert, listenTCP(t))
	tbl := &routing.Table{Passthrough: map[string]*routing.Backend{
		"backend.example": backend("ns/be:443", 0, be),
		"*.wild.example":  backend("ns/wild:443", 0, be),
	}}
	met, _ := NewMetrics(nil)
	p := NewPassthrough(PassthroughConfig{Metrics: met})
	addr := frontServer(t, p, tbl, frontCert, listenTCP(t))
	roots := pool(frontCert, beCert)
	cases := []struct {
		sni, wantCN, wantBody string
	}{
		{"backend.example", "backend.example", "backend"},
		{"front.example", "front.example", "front"},
		{"a.wild.example", "backend.example", "backend"},
	}
	for _, tc := range cases {
		t.Run(tc.sni, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
				&tls.Config{ServerName: tc.sni, RootCAs: roots, InsecureSkipVerify: tc.sni == "a.wild.example"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != tc.wantCN {
				t.Fatalf("certificate %q, want %q", cn, tc.wantCN)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			body, _ := io.ReadAll(c)
			if string(body) != tc.wantBody {
				t.Fatalf("body %q, want %q", body, tc.wantBody)
			}
		})
	}
	if v := value(t, met.connections); v != 2 {
		t.Errorf("passthrough connections = %v, want 2", v)
	}
}

// TestPassthroughOpenSSL drives the real openssl client through the proxy.
func TestPassthroughOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl binary required (apt-get install -y openssl): %v", err)
	}
	frontCert, beCert := selfSigned(t, "front.example"), selfSigned(t, "backend.example")
	be := backendTLS(t, beCert, listenTCP(t))
	tbl := &routing.Table{Passthrough: map[string]*routing.Backend{"backend.example": backend("ns/be:443", 0, be)}}
	addr := frontServer(t, NewPassthrough(PassthroughConfig{}), tbl, frontCert, listenTCP(t))
	for sni, want := range map[string]string{"backend.example": "backend.example", "front.example": "front.example"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-servername", sni)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("openssl s_client -servername %s: %v\n%s", sni, err, out)
		}
		if !regexp.MustCompile(`(?m)^subject=.*CN ?= ?` + regexp.QuoteMeta(want) + `$`).Match(out) {
			t.Fatalf("-servername %s: want subject %s in output:\n%s", sni, want, out)
		}
	}
}

func TestPassthroughProxyHeaderCarriesClient(t *testing.T) {
	beCert := selfSigned(t, "backend.example")
	srcs := make(chan string, 1)
	ln := &proxyproto.Listener{Listener: listenTCP(t), Policy: func(net.Addr) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
	be := tcpServer(t, ln, func(c net.Conn) {
		srcs <- c.RemoteAddr().String()
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{beCert}})
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		_ = s.Handshake()
	})
	tbl := &routing.Table{Passthrough: map[string]*routing.Backend{"backend.example": backend("ns/be:443", 2, be)}}
	p := NewPassthrough(PassthroughConfig{})
	// The front listener itself receives PROXY headers (the NLB case): the
	// client address announced to the backend is the one it carried.
	front := &proxyproto.Listener{Listener: listenTCP(t)}
	addr := tcpServer(t, front, func(c net.Conn) { p.Route(c, tbl) })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("198.18.0.7"), Port: 4242}, c.RemoteAddr())
	if _, err := hdr.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "backend.example", RootCAs: pool(beCert)})
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	select {
	case src := <-srcs:
		if src != "198.18.0.7:4242" {
			t.Fatalf("backend saw client %s, want 198.18.0.7:4242", src)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend got no connection")
	}
}

func TestPassthroughEdgeCases(t *testing.T) {
	frontCert := selfSigned(t, "front.example")
	tbl := &routing.Table{Passthrough: map[string]*routing.Backend{
		"empty.example": backend("ns/none:443", 0),
	}}
	met, _ := NewMetrics(nil)
	p := NewPassthrough(PassthroughConfig{Metrics: met, PeekTimeout: 100 * time.Millisecond})
	addr := frontServer(t, p, tbl, frontCert, listenTCP(t))
	t.Run("plain HTTP goes on to the TLS server", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		// crypto/tls rejects the record header and the front closes.
		if len(b) != 0 {
			t.Fatalf("unexpected answer %q", b)
		}
	})
	t.Run("silent client dropped after peek timeout", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("read succeeded")
		}
	})
	t.Run("backend without endpoints", func(t *testing.T) {
		_, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: "empty.example", InsecureSkipVerify: true})
		if err == nil {
			t.Fatal("handshake succeeded without a backend")
		}
	})
	if v := value(t, met.drops); v != 2 {
		t.Errorf("drops = %v, want 2 (peek timeout, no backend)", v)
	}
}

func TestPassthroughNoTableDoesNotRead(t *testing.T) {
	p := NewPassthrough(PassthroughConfig{})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for _, tbl := range []*routing.Table{nil, {}} {
		conn, handled := p.Route(a, tbl)
		if handled || conn != a {
			t.Fatalf("Route(%v) = %v, %v; want the same conn, false", tbl, conn, handled)
		}
	}
}

func TestPassthroughNegativePeekTimeoutUsesCallerDeadline(t *testing.T) {
	tbl := &routing.Table{Passthrough: map[string]*routing.Backend{"x.example": backend("ns/x:443", 0, "127.0.0.1:1")}}
	p := NewPassthrough(PassthroughConfig{PeekTimeout: -1})
	a, b := net.Pipe()
	defer b.Close()
	_ = a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	conn, handled := p.Route(a, tbl)
	if !handled || conn != nil {
		t.Fatalf("silent client: Route = %v, %v; want nil, true", conn, handled)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("peek ignored the caller's deadline (%v)", d)
	}
}
