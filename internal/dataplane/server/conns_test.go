package server

import (
	"bufio"
	"crypto/tls"
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

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestHoldUntilClose: once held, a TLS connection's last response and its
// close_notify reach the socket in one write at Close, and the client reads
// the response and a clean end (close_notify, not a truncation); a write
// larger than holdMax goes through at once with what was held before it;
// CloseWrite sends what is held before it half-closes.
func TestHoldUntilClose(t *testing.T) {
	ca := newCA(t)
	cert := ca.leaf(t, "a.example.com")
	for _, tc := range []struct {
		name   string
		writes []int // plaintext writes after HoldUntilClose
		// want is the socket writes from HoldUntilClose to the end (at
		// least that many with atLeast: how crypto/tls cuts a large write
		// into records is its own choice).
		want       int
		atLeast    bool
		closeWrite bool
	}{
		{name: "response then close", writes: []int{500}, want: 1},
		{name: "two writes then close", writes: []int{500, 700}, want: 1},
		{name: "over holdMax", writes: []int{500, holdMax + 1}, want: 2, atLeast: true}, // held output, then the rest written through
		{name: "close write", writes: []int{500}, want: 1, closeWrite: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			_ = client.SetDeadline(time.Now().Add(10 * time.Second))
			raw, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			cc := &countingConn{Conn: raw}
			s := &Server{cfg: Config{MaxConns: 1}, conns: make(map[*trackedConn]struct{}), m: mustMetrics(t)}
			tc0 := s.track(cc, listenerHTTPS, nil)
			srv := tls.Server(tc0, &tls.Config{Certificates: []tls.Certificate{*cert}})
			cli := tls.Client(client, &tls.Config{ServerName: "a.example.com", RootCAs: ca.pool})
			read := make(chan error, 1)
			var got int
			go func() {
				if err := cli.Handshake(); err != nil {
					read <- err
					return
				}
				n, err := io.Copy(io.Discard, cli) // until close_notify: io.EOF, a nil error
				got = int(n)
				read <- err
			}()
			_ = srv.SetDeadline(time.Now().Add(10 * time.Second))
			if err := srv.Handshake(); err != nil {
				t.Fatal(err)
			}
			before := cc.writes.Load()
			tc0.HoldUntilClose()
			total := 0
			for _, n := range tc.writes {
				if _, err := srv.Write(make([]byte, n)); err != nil {
					t.Fatal(err)
				}
				total += n
			}
			if tc.closeWrite {
				if err := srv.CloseWrite(); err != nil { // close_notify, then the held output, then FIN
					t.Fatal(err)
				}
				_ = tc0.CloseWrite()
			}
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-read; err != nil || got != total {
				t.Fatalf("client read %d bytes, err %v; want %d and a clean close_notify", got, err, total)
			}
			if n := cc.writes.Load() - before; n != int32(tc.want) && !(tc.atLeast && n > int32(tc.want)) {
				t.Fatalf("%d socket writes after HoldUntilClose, want %d", n, tc.want)
			}
			if len(s.conns) != 0 {
				t.Fatal("connection still tracked after Close")
			}
		})
	}
}
