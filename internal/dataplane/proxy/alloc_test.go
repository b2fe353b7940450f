//go:build !race

// Allocation guards run without the race detector: under it sync.Pool
// drops a quarter of what is put back, so pooled buffers get reallocated
// and the counts stop meaning anything.

package proxy

import (
	"strings"
	"testing"
)

// TestProxyAllocs guards the HTTP/1.1 hot path: a proxied keep-alive
// request costs two allocations, the string copies of the request head and
// of the upstream response head; everything else (buffers, exchange state,
// upstream connection, metrics children) is pooled or reused.
func TestProxyAllocs(t *testing.T) {
	_, fe := proxyFor(t, rawBackend(t))
	bc := newBenchClient(t, strings.TrimPrefix(fe.URL, "http://"))
	for range 10 {
		bc.roundTrip(t) // warm: pools, metric children, the date cache
	}
	// AllocsPerRun counts the whole process (the engine and the proxy run
	// on their own goroutines) over 500 runs; the average is exact because
	// a round trip completes before the next starts.
	if n := testing.AllocsPerRun(500, func() { bc.roundTrip(t) }); n > 2 {
		t.Fatalf("%v allocations per proxied request, want at most 2", n)
	}
}
