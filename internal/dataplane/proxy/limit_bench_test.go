package proxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
)

// benchLimit is a limit no benchmark reaches (60 s windows of 60 million),
// so every request is admitted and counted: the cost of a check that
// passes, the common case.
func benchLimit() *routing.RequestLimit {
	return &routing.RequestLimit{Name: "default/bench", RPS: 1_000_000, BurstMultiplier: 60,
		Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
}

// BenchmarkProxyH1Limited is BenchmarkProxyH1 on a route with a rate
// limit keyed by client address: run beside it, the difference is the
// limit stage's share of a proxied request.
func BenchmarkProxyH1Limited(b *testing.B) {
	lim, err := ratelimit.New(ratelimit.Config{})
	if err != nil {
		b.Fatal(err)
	}
	var holder tables
	r := prefix("/", be("bench", rawBackend(b)))
	r.Limit = benchLimit()
	holder.Store(table(1, vhost("bench.example.com", r)))
	_, fe := newProxy(b, &holder, Config{Limiter: lim})
	bc := newBenchClient(b, strings.TrimPrefix(fe.URL, "http://"))
	bc.roundTrip(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bc.roundTrip(b)
	}
	b.StopTimer()
	if st := lim.Stats(); st.Keys != 1 {
		b.Fatalf("limiter keys %d, want the one client", st.Keys)
	}
}

// BenchmarkLimitStage measures the stage alone (allow list, key, the
// cluster-wide check and count) for one client address, and for a header
// key with 10,000 distinct values.
func BenchmarkLimitStage(b *testing.B) {
	lim, err := ratelimit.New(ratelimit.Config{})
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Config{Limiter: lim})
	if err != nil {
		b.Fatal(err)
	}
	byAddr := benchLimit()
	byHdr := benchLimit()
	byHdr.Name, byHdr.Header = "default/bench-hdr", "X-Api-Key"
	rA, rH := prefix("/a", be("bench", "127.0.0.1:1")), prefix("/h", be("bench", "127.0.0.1:1"))
	rA.Limit, rH.Limit = byAddr, byHdr
	h.Apply(table(1, vhost("bench.example.com", rA, rH)))
	ts := h.up.cur.Load()
	var w nullWriter
	req := &exchange.Request{Proto: exchange.HTTP11, Method: "GET", Scheme: "http", Host: "bench.example.com",
		Target: "/", Path: "/", RemoteAddr: netip.MustParseAddrPort("192.0.2.10:41234"), Start: time.Now()}
	b.Run("client-address", func(b *testing.B) {
		x := h.getState(&w, req)
		b.ReportAllocs()
		for b.Loop() {
			if x.limited(ts, byAddr) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("header-10000-keys", func(b *testing.B) {
		keys := make([]string, 10_000)
		for i := range keys {
			keys[i] = "key-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('A'+i/26%26)) + string(rune('0'+i/676))
		}
		reqs := make([]exchange.Request, len(keys))
		for i := range reqs {
			reqs[i] = *req
			reqs[i].Header = exchange.Header{}
			reqs[i].Header.Add("X-Api-Key", keys[i])
		}
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			x := h.getState(&w, &reqs[i%len(reqs)])
			if x.limited(ts, byHdr) {
				b.Fatal("rejected")
			}
			h.putState(x)
			i++
		}
	})
}
