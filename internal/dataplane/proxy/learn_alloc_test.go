//go:build !race

// Allocation guards of sticky learn's request path; like alloc_test.go
// they run without the race detector (its sync.Pool drops what is put
// back, and the key hashers are pooled).

package proxy

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// A lookup that finds its session (key MAC, table Get, endpoint index)
// does not allocate, and neither does a miss.
func TestStickyLookupAllocs(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	ls, _ := learnFixture(t, &now)
	var resp exchange.Header
	resp.Add("Set-Cookie", "JSESSIONID=0123456789ABCDEF0123456789ABCDEF; Path=/")
	ls.respond(&resp, 2, 200, &learnRequest{}, time.Unix(0, now.Load()), false)
	var hit, miss exchange.Header
	hit.Add("Cookie", "lang=en; JSESSIONID=0123456789ABCDEF0123456789ABCDEF; theme=dark")
	miss.Add("Cookie", "lang=en; JSESSIONID=FEDCBA9876543210FEDCBA9876543210")
	var lr learnRequest
	for name, h := range map[string]*exchange.Header{"hit": &hit, "miss": &miss} {
		want := map[string]int{"hit": 2, "miss": -1}[name]
		if got := ls.lookup(h, &lr, clockOf(&now)); got != want {
			t.Fatalf("%s: lookup %d, want %d", name, got, want)
		}
		if n := testing.AllocsPerRun(1000, func() { ls.lookup(h, &lr, clockOf(&now)) }); n != 0 {
			t.Errorf("%s: %v allocations per lookup", name, n)
		}
	}
}

// A proxied request whose session the table holds costs what any proxied
// request costs (TestProxyAllocs): sticky learn adds no allocation.
func TestStickyProxyAllocs(t *testing.T) {
	bc, ls := stickyProxy(t)
	for range 10 {
		bc.roundTrip(t)
	}
	if n := testing.AllocsPerRun(500, func() { bc.roundTrip(t) }); n > 2 {
		t.Fatalf("%v allocations per proxied sticky request, want at most 2", n)
	}
	if hits := counter(ls.lookups[lookupHit]); hits != 511 { // warm-up, AllocsPerRun's own run, 500 runs
		t.Fatalf("%v table hits, want 511: the requests were not routed by their session", hits)
	}
}
