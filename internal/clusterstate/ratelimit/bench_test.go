package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAllow is the request-path cost of a limit check: hash the
// client address, find its key, roll and estimate, count. Hot: one client;
// Spread: 10,000 clients.
func BenchmarkAllow(b *testing.B) {
	l, _ := New(Config{Key: sharedKey})
	lm, _ := l.Limit(Spec{Name: "ns/ing#rps", Rate: 1 << 30, Window: time.Second})
	addrs := make([][16]byte, 10_000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).As16()
	}
	b.Run("Hot", func(b *testing.B) {
		a := addrs[0]
		b.ReportAllocs()
		for b.Loop() {
			lm.Allow(a[:])
		}
	})
	b.Run("Spread", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			lm.Allow(addrs[i%len(addrs)][:])
			i++
		}
	})
}

// An admitted request of a tracked key allocates nothing.
func TestAllowDoesNotAllocate(t *testing.T) {
	l, _ := New(Config{Key: sharedKey})
	lm, _ := l.Limit(Spec{Name: "n", Rate: 1 << 30, Window: time.Second})
	a := netip.MustParseAddr("192.0.2.1").As16()
	lm.Allow(a[:])
	l.Report() // the key is clean again: its next admission appends to the dirty list once
	if n := testing.AllocsPerRun(1000, func() { lm.Allow(a[:]) }); n > 0.01 {
		t.Errorf("Allow allocates %.2f times per call", n)
	}
}
