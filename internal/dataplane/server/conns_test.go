package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestProxyHeaderReplaysBufferedBytes sends the PROXY header and the whole
// request in one write, so the header parser buffers request bytes past the
// header; they must reach net/http intact after the parser is dropped.
func TestProxyHeaderReplaysBufferedBytes(t *testing.T) {
	for _, v := range []byte{1, 2} {
		f := newFixture(t, func(c *Config) {
			c.ProxyProtocol = true
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		})
		var xff atomic.Value
		f.setBackend(func(_ http.ResponseWriter, r *http.Request) { xff.Store(r.Header.Get("X-Forwarded-For")) })
		c, err := net.DialTimeout("tcp", f.httpAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := append(proxyHeader(t, v, "203.0.113.7:4000", f.httpAddr()),
			"GET /one-write HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.Close()
		if got := xff.Load(); resp.StatusCode != 200 || got != "203.0.113.7" {
			t.Fatalf("v%d: status %d X-Forwarded-For %v, want 200 203.0.113.7", v, resp.StatusCode, got)
		}
	}
}

// TestProxiedConnAllocs guards the per-request cost of a connection that
// went through PROXY parsing: net/http moves read deadlines several times
// per request, and go-proxyproto's wrapper allocated on each.
func TestProxiedConnAllocs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{conns: make(map[*trackedConn]struct{}), m: mustMetrics(t)}
	tc := &trackedConn{Conn: raw, srv: s, listener: listenerHTTPS}
	pc := &proxiedConn{trackedConn: tc, local: raw.LocalAddr(), remote: raw.RemoteAddr()}
	defer pc.Close()
	deadline := time.Now().Add(time.Hour)
	buf := make([]byte, 8)
	if n := testing.AllocsPerRun(200, func() {
		_ = pc.SetReadDeadline(deadline)
		_ = pc.SetReadDeadline(time.Time{})
		_, _ = client.Write(buf[:1])
		_, _ = pc.Read(buf)
		_ = pc.RemoteAddr()
	}); n != 0 {
		t.Fatalf("%v allocations per deadline+read, want 0", n)
	}
}

func mustMetrics(t *testing.T) *metrics {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestProxyHeaderAcrossReads writes the header a few bytes at a time (a
// balancer whose header and payload arrive in several segments): the stage
// reads until the header is whole, carries its addresses, and replays
// exactly the bytes after it. A LOCAL header keeps the socket's addresses.
func TestProxyHeaderAcrossReads(t *testing.T) {
	s := &Server{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	for _, tc := range []struct {
		name       string
		header     []byte
		wantRemote string
	}{
		{"v1", []byte("PROXY TCP4 203.0.113.9 198.51.100.1 40000 443\r\n"), "203.0.113.9:40000"},
		{"v2", proxyHeader(t, 2, "203.0.113.9:40000", "198.51.100.1:443"), "203.0.113.9:40000"},
		{"v2 LOCAL", []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"), "127.0.0.1:40000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			payload := []byte("\x16\x03\x01 the ClientHello")
			go func() {
				in := append(append([]byte{}, tc.header...), payload...)
				for len(in) > 0 { // net.Pipe: each Write is one Read on the other side
					n := min(len(in), 5)
					if _, err := client.Write(in[:n]); err != nil {
						return
					}
					in = in[n:]
				}
				_ = client.Close()
			}()
			c, err := s.readProxyHeader(&trackedConn{Conn: tcpPipe{server}, srv: s}, time.Now().Add(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.RemoteAddr().String(); got != tc.wantRemote {
				t.Errorf("remote %s, want %s", got, tc.wantRemote)
			}
			rest, _ := io.ReadAll(c)
			if string(rest) != string(payload) {
				t.Errorf("read %q after the header, want %q", rest, payload)
			}
		})
	}
}
