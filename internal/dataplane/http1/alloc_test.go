//go:build !race

// Allocation guards run without the race detector: under it sync.Pool
// drops a quarter of what is put back, so pooled buffers get reallocated
// and the counts stop meaning anything.

package http1

import (
	"io"
	"testing"
)

// TestServeAllocs guards the engine's cost per request on a keep-alive
// connection: reading, parsing and answering a request allocates only the
// head's string copy.
func TestServeAllocs(t *testing.T) {
	_, addr := startServer(t, ServerConfig{Handler: okHandler()})
	c, _ := rawConn(t, addr)
	req := []byte("GET /api/v1/items?x=1 HTTP/1.1\r\nHost: bench.example.com\r\nUser-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAtLeast(c, buf, 40); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	// The server side runs on another goroutine; AllocsPerRun counts the
	// whole process's allocations, client included (none here).
	if n := testing.AllocsPerRun(200, roundTrip); n > 1 {
		t.Fatalf("%v allocations per request, want at most 1 (the head string)", n)
	}
}
