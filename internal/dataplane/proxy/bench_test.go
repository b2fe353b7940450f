package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
)

// BenchmarkHandler measures one proxied GET through the Handler to a real
// httptest backend over a pooled upstream connection (allocations include
// net/http's client side of the upstream hop).
func BenchmarkHandler(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		_, _ = w.Write([]byte("ok"))
	}))
	defer backend.Close()
	var holder routing.Holder
	holder.Store(table(1, vhost("bench.example.com", prefix("/", be("bench", addrOf(backend))))))
	h, err := New(Config{Table: &holder})
	if err != nil {
		b.Fatal(err)
	}
	defer h.CloseIdleConnections()
	req := httptest.NewRequest("GET", "http://bench.example.com/api/v1/items?x=1", nil)
	req.RemoteAddr = "192.0.2.10:41234"
	rec := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
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
	var holder routing.Holder
	holder.Store(table(1, vhost("bench.example.com", prefix("/", be("bench", "127.0.0.1:1")))))
	h, err := New(Config{Table: &holder})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://unknown.example.com/", nil)
	rec := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(rec, req)
	}
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

func (w *discardWriter) WriteString(s string) (int, error) { return len(s), nil }

// BenchmarkHandlerStubUpstream isolates the proxy layer (routing, state,
// ReverseProxy, X-Forwarded-*, metrics) from net/http's client and the
// backend: the upstream transport answers from memory.
func BenchmarkHandlerStubUpstream(b *testing.B) {
	var holder routing.Holder
	b1 := be("bench", "192.0.2.1:80")
	holder.Store(table(1, vhost("bench.example.com", prefix("/", b1))))
	h, err := New(Config{Table: &holder})
	if err != nil {
		b.Fatal(err)
	}
	bs := h.up.backend(holder.Load(), b1)
	bs.transport = stubTransport{}
	req := httptest.NewRequest("GET", "http://bench.example.com/api/v1/items?x=1", nil)
	req.RemoteAddr = "192.0.2.10:41234"
	rec := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(rec.h)
		h.ServeHTTP(rec, req)
		if rec.status != 200 {
			b.Fatalf("status %d", rec.status)
		}
	}
}

// stubTransport answers 200 "ok" without I/O.
type stubTransport struct{}

func (stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody,
		ContentLength: 0, Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
}
