package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// cannedResponse is what rawBackend answers: a response the size of the
// echo backend's, with the fields a Go backend sends.
var cannedResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Echo-Backend: bench\r\n" +
	"Date: Mon, 23 Nov 2026 13:22:04 GMT\r\nContent-Length: 480\r\n\r\n" + strings.Repeat("x", 480))

// rawBackend is an HTTP/1.1 backend that answers every request head with
// cannedResponse without allocating, so that benchmarks and allocation
// guards count meshgate's side alone. It reads heads only (no bodies).
func rawBackend(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveCanned(c) })
		}
	})
	return ln.Addr().String()
}

func serveCanned(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 8192)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return
		}
		n += m
		for {
			end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			if _, err := c.Write(cannedResponse); err != nil {
				return
			}
			n = copy(buf, buf[end+4:n])
		}
	}
}

// benchClient sends keep-alive requests to addr and reads the responses
// without allocating (a response is known to end with cannedResponse's
// body, or with "ok\n").
type benchClient struct {
	c   net.Conn
	req []byte
	buf []byte
}

func newBenchClient(tb testing.TB, addr string) *benchClient {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &benchClient{c: c, buf: make([]byte, 16384),
		req: []byte("GET /api/v1/items?x=1 HTTP/1.1\r\nHost: bench.example.com\r\nUser-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\n\r\n")}
}

func (bc *benchClient) roundTrip(tb testing.TB) {
	if _, err := bc.c.Write(bc.req); err != nil {
		tb.Fatal(err)
	}
	n := 0
	for {
		m, err := bc.c.Read(bc.buf[n:])
		if err != nil {
			tb.Fatal(err)
		}
		n += m
		if n > 480 && bytes.HasSuffix(bc.buf[:n], cannedResponse[len(cannedResponse)-16:]) {
			if !bytes.HasPrefix(bc.buf[:n], []byte("HTTP/1.1 200 ")) {
				tb.Fatalf("response %q", bc.buf[:min(n, 200)])
			}
			return
		}
	}
}

// proxyFor serves a Handler for bench.example.com → backend behind the
// HTTP/1.1 engine.
func proxyFor(tb testing.TB, backend string) (*Handler, *frontEnd) {
	var holder tables
	holder.Store(table(1, vhost("bench.example.com", prefix("/", be("bench", backend)))))
	return newProxy(tb, &holder, Config{})
}

// BenchmarkProxyH1 measures one proxied keep-alive GET end to end on the
// HTTP/1.1 path: client → engine → routing → pooled upstream connection →
// a canned backend → response streamed back. Client, meshgate and backend
// share the process, so ns/op counts all three (and 4 syscalls each way);
// allocs/op is meshgate's own (neither the client nor the backend
// allocates).
func BenchmarkProxyH1(b *testing.B) {
	_, fe := proxyFor(b, rawBackend(b))
	bc := newBenchClient(b, strings.TrimPrefix(fe.URL, "http://"))
	bc.roundTrip(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bc.roundTrip(b)
	}
}

// BenchmarkHandlerHTTP measures one proxied GET through the net/http
// adapter (the HTTP/2 and HTTP/3 front ends' entry) to the canned backend
// over the same pooled upstream connection, with a ResponseWriter that
// discards: the adapter's cost on top of ServeExchange.
func BenchmarkHandlerHTTP(b *testing.B) {
	h, _ := proxyFor(b, rawBackend(b))
	req := httptest.NewRequest("GET", "http://bench.example.com/api/v1/items?x=1", nil)
	req.RemoteAddr = "192.0.2.10:41234"
	rec := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(rec.h)
		rec.status = 0
		h.ServeHTTP(rec, req)
		if rec.status != 200 {
			b.Fatalf("status %d", rec.status)
		}
	}
}

// BenchmarkNotFound measures a request answered without a backend.
func BenchmarkNotFound(b *testing.B) {
	var holder tables
	holder.Store(table(1, vhost("bench.example.com", prefix("/", be("bench", "127.0.0.1:1")))))
	h, err := New(Config{})
	holder.attach(h)
	if err != nil {
		b.Fatal(err)
	}
	r := &exchange.Request{Proto: exchange.HTTP11, Method: "GET", Scheme: "http", Host: "unknown.example.com", Target: "/", Path: "/"}
	var w nullWriter
	b.ReportAllocs()
	for b.Loop() {
		h.ServeExchange(&w, r)
	}
}

// nullWriter is an exchange.ResponseWriter that discards everything.
type nullWriter struct{}

func (*nullWriter) WriteHeader(int, *exchange.Header, int64) error { return nil }
func (*nullWriter) Write(p []byte) (int, error)                    { return len(p), nil }
func (*nullWriter) Flush() error                                   { return nil }
func (*nullWriter) Finish(*exchange.Header) error                  { return nil }

// discardWriter is an http.ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

var _ io.Writer = (*discardWriter)(nil)
