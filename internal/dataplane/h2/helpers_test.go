package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/testkit"
)

// echoHandler answers every request with what it saw: the body is
// "METHOD HOST TARGET PATH\n" then the request body; request fields come
// back as "x-echo-<name>" fields and request trailers as response
// trailers. Paths select other behaviours:
//
//	/big/N    N bytes of body, content-length known
//	/stream/N N bytes in 1000-byte writes with a flush each, length unknown
//	/noend    a head, then return without Finish (the stream must be reset)
//	/block    wait until the request's context is done
//	/empty    204 without body
type echoHandler struct {
	served   atomic.Int64
	canceled atomic.Int64
}

func (e *echoHandler) ServeExchange(w exchange.ResponseWriter, r *exchange.Request) {
	e.served.Add(1)
	var out exchange.Header
	switch {
	case len(r.Path) > 5 && r.Path[:5] == "/big/":
		n, _ := strconv.Atoi(r.Path[5:])
		_ = w.WriteHeader(200, &out, int64(n))
		_, _ = w.Write(bytes.Repeat([]byte("b"), n))
		_ = w.Finish(nil)
		return
	case len(r.Path) > 8 && r.Path[:8] == "/stream/":
		n, _ := strconv.Atoi(r.Path[8:])
		_ = w.WriteHeader(200, &out, -1)
		chunk := bytes.Repeat([]byte("s"), 1000)
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			_ = w.Flush()
			n -= k
		}
		_ = w.Finish(nil)
		return
	case r.Path == "/noend":
		_ = w.WriteHeader(200, &out, -1)
		_, _ = w.Write([]byte("partial"))
		_ = w.Flush()
		return
	case r.Path == "/block":
		<-r.Context.Done()
		e.canceled.Add(1)
		_ = w.WriteHeader(499, &out, 0)
		_ = w.Finish(nil)
		return
	case r.Path == "/empty":
		_ = w.WriteHeader(204, &out, 0)
		_ = w.Finish(nil)
		return
	}
	body := []byte(r.Method + " " + r.Host + " " + r.Target + " " + r.Path + "\n")
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			out.Add("X-Body-Error", err.Error())
		}
		body = append(body, b...)
	}
	for _, f := range r.Header.Fields() {
		out.Add("X-Echo-"+f.Name, f.Value)
	}
	if r.TrailersOK {
		out.Add("X-Trailers-Ok", "1")
	}
	_ = w.WriteHeader(200, &out, -1)
	_, _ = w.Write(body)
	var tr *exchange.Header
	if r.Body != nil {
		tr = r.Body.Trailer()
	}
	_ = w.Finish(tr)
}

// testServer serves h2 on a loopback listener: TLS with ALPN h2 when
// tlsOn, else HTTP/2 with prior knowledge.
type testServer struct {
	srv  *Server
	ln   net.Listener
	addr string
	tls  bool
	h    *echoHandler
	// errs receives each refusal reason the first time the server counts
	// it: a flood of one reason (hundreds of refused streams) can then
	// never crowd out the one a test waits for.
	errs chan string
	mu   sync.Mutex
	seen map[string]bool
}

func newTestServer(t *testing.T, tlsOn bool, mod func(*Config)) *testServer {
	t.Helper()
	h := &echoHandler{}
	ts := &testServer{h: h, tls: tlsOn, errs: make(chan string, 1024), seen: map[string]bool{}}
	cfg := Config{Handler: h, CountError: func(r string) {
		ts.mu.Lock()
		first := !ts.seen[r]
		ts.seen[r] = true
		ts.mu.Unlock()
		if first {
			ts.errs <- r // one per distinct reason: never full
		}
	}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = s
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.ln, ts.addr = ln, ln.Addr().String()
	var tlsCfg *tls.Config
	if tlsOn {
		tlsCfg = testTLSConfig(t)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				info := ConnInfo{RemoteAddr: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
				if tlsCfg != nil {
					tc := tls.Server(c, tlsCfg)
					if err := tc.Handshake(); err != nil {
						_ = c.Close()
						return
					}
					c, info.TLS = tc, true
				}
				s.ServeConn(c, info)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		s.Close()
	})
	return ts
}

// client returns Go's HTTP/2 client for ts.
func (ts *testServer) client() *http.Client {
	tr := &http2.Transport{}
	if ts.tls {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}} //nolint:gosec // a test server's own certificate
	} else {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func (ts *testServer) url(p string) string {
	if ts.tls {
		return "https://" + ts.addr + p
	}
	return "http://" + ts.addr + p
}

// rawConn is a hand-driven client connection: a Framer and an HPACK
// encoder over a plain TCP connection to a prior-knowledge server.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func (ts *testServer) raw(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawConn{t: t, c: c, fr: http2.NewFramer(c, c)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.enc = hpack.NewEncoder(&rc.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return rc
}

// block HPACK-encodes fields given as name, value pairs.
func (rc *rawConn) block(kv ...string) []byte {
	rc.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = rc.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), rc.hbuf.Bytes()...)
}

// get is a minimal GET request head.
func get(path string) []string {
	return []string{":method", "GET", ":scheme", "http", ":path", path, ":authority", "example.com"}
}

func (rc *rawConn) headers(id uint32, end bool, kv ...string) {
	rc.t.Helper()
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.block(kv...), EndStream: end, EndHeaders: true}); err != nil {
		rc.t.Fatal(err)
	}
}

// until reads frames until match returns true, failing on EOF.
func (rc *rawConn) until(what string, match func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(f) {
			return f
		}
	}
}

// goAway waits for the server's GOAWAY and returns its code.
func (rc *rawConn) goAway() http2.ErrCode {
	rc.t.Helper()
	f := rc.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	return f.(*http2.GoAwayFrame).ErrCode
}

// rst waits for RST_STREAM on id and returns its code.
func (rc *rawConn) rst(id uint32) http2.ErrCode {
	rc.t.Helper()
	f := rc.until("RST_STREAM", func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	})
	return f.(*http2.RSTStreamFrame).ErrCode
}

// status waits for the response head on id and returns its :status.
func (rc *rawConn) status(id uint32) string {
	rc.t.Helper()
	f := rc.until("response head", func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == id
	})
	return f.(*http2.MetaHeadersFrame).PseudoValue("status")
}

// testTLSConfig is a server config with a fresh self-signed ECDSA
// certificate for 127.0.0.1 and ALPN h2.
func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	c := testkit.NewCert(t, testkit.Spec{Names: []string{"example.com"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	return &tls.Config{Certificates: []tls.Certificate{*c.TLS}, NextProtos: []string{"h2"}}
}
