package deny

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/testkit"
)

func TestCanonicalKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":           "192.0.2.1",
		"192.0.2.1/32":        "192.0.2.1",
		"192.0.2.77/24":       "192.0.2.0/24",
		"::ffff:192.0.2.1":    "192.0.2.1",
		"::ffff:10.1.0.0/112": "10.1.0.0/16",
		"2001:DB8::1":         "2001:db8::1",
		"2001:db8::1/128":     "2001:db8::1",
		"2001:db8:1::/32":     "2001:db8::/32",
		"0.0.0.0/0":           "0.0.0.0/0",
		"fe80::1%eth0":        "",
		"::ffff:0:0/90":       "",
		"10.0.0.0/33":         "",
		"example.com":         "",
		"":                    "",
		"10.0.0.1 ":           "",
	} {
		got, err := CanonicalKey(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("CanonicalKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestSetContains(t *testing.T) {
	s, bad := Compile([]string{"192.0.2.1", "198.51.100.0/24", "10.0.0.0/8", "2001:db8::/32", "2001:db8:ffff::7", "nonsense"})
	if len(bad) != 1 || bad[0] != "nonsense" || s.Len() != 5 {
		t.Fatalf("Compile: len %d, bad %v", s.Len(), bad)
	}
	for addr, want := range map[string]bool{
		"192.0.2.1":         true,
		"192.0.2.2":         false,
		"198.51.100.255":    true,
		"198.51.101.0":      false,
		"10.200.3.4":        true,
		"11.0.0.1":          false,
		"::ffff:10.0.0.1":   true, // a dual-stack listener's view of an IPv4 client
		"2001:db8:1234::1":  true,
		"2001:db9::1":       false,
		"::1":               false,
		"fe80::1%eth0":      false,
		"2001:db8:ffff::7":  true,
		"2001:db8::1%wlan0": true,
	} {
		if got := s.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	var empty *Set
	if empty.Contains(netip.MustParseAddr("10.0.0.1")) || empty.Len() != 0 || s.Contains(netip.Addr{}) {
		t.Error("nil set or invalid address matched")
	}
	var nl *List
	if nl.Refuse(netip.MustParseAddr("10.0.0.1"), StageRequest) {
		t.Error("a nil List refused")
	}
}

// The hot path: a lookup in a list of realistic size neither allocates
// nor locks (it is an atomic load and map lookups; -race would flag a
// data race against Store).
func TestRefuseDoesNotAllocate(t *testing.T) {
	var l List
	l.Store(bigSet())
	hit, miss := netip.MustParseAddr("10.3.7.9"), netip.MustParseAddr("203.0.113.9")
	if !l.Refuse(hit, StageConnection) || l.Refuse(miss, StageConnection) {
		t.Fatal("lookup answers")
	}
	if n := testing.AllocsPerRun(1000, func() { l.Refuse(hit, StageConnection); l.Refuse(miss, StageRequest) }); n != 0 {
		t.Fatalf("%v allocations per lookup pair", n)
	}
	if l.Refused(StageConnection) != 1002 || l.Refused(StageRequest) != 0 {
		t.Fatalf("refusals counted: %d %d", l.Refused(StageConnection), l.Refused(StageRequest))
	}
}

// bigSet is 10,000 addresses and 100 prefixes of 8 lengths, IPv4 and IPv6.
func bigSet() *Set {
	var keys []string
	for i := range 10000 {
		keys = append(keys, fmt.Sprintf("172.%d.%d.%d", 16+i/65536, i/256%256, i%256))
	}
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("10.%d.0.0/%d", i, 16+i%8), fmt.Sprintf("2001:db8:%x::/%d", i, 48+i%8))
	}
	s, _ := Compile(keys)
	return s
}

func BenchmarkRefuse(b *testing.B) {
	var l List
	l.Store(bigSet())
	for _, tc := range []struct {
		name string
		addr netip.Addr
	}{
		{"empty-list", netip.Addr{}},
		{"v4-miss", netip.MustParseAddr("203.0.113.9")},
		{"v4-hit", netip.MustParseAddr("172.16.1.1")},
		{"v6-miss", netip.MustParseAddr("2001:db9::1")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ll := &l
			a := tc.addr
			if !a.IsValid() {
				ll, a = &List{}, netip.MustParseAddr("203.0.113.9")
			}
			b.ReportAllocs()
			for b.Loop() {
				ll.Refuse(a, StageConnection)
			}
		})
	}
}

// Follow compiles the zone at once and again after every change: a
// write, a deletion, an expiry.
func TestFollow(t *testing.T) {
	st, err := clusterstate.New(clusterstate.Config{Zones: []clusterstate.ZoneConfig{{Name: Zone}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(Zone, "192.0.2.0/24", nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	var l List
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Follow(ctx, st, Zone, nil) }()
	waitGen := func(after uint64, what string) {
		t.Helper()
		testkit.WaitFor(t, 5*time.Second, what+": a new list", func() bool { return l.Generation() > after })
	}
	waitGen(0, "first compile")
	a := netip.MustParseAddr("192.0.2.9")
	if !l.Set().Contains(a) {
		t.Fatal("the entry present at start is not in the list")
	}
	g := l.Generation()
	st.Delete(Zone, "192.0.2.0/24", time.Hour)
	waitGen(g, "deletion")
	if l.Set().Contains(a) {
		t.Fatal("deleted prefix still denied")
	}
	g = l.Generation()
	st.Put(Zone, "bad key", nil, time.Hour) // around the API's check
	waitGen(g, "bad key")
	if l.invalid.Load() != 1 {
		t.Fatalf("invalid keys %d", l.invalid.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Follow(context.Background(), st, "nope", nil); err == nil {
		t.Fatal("Follow of an unknown zone returned nil")
	}
}

// Current is false from a change of the zone until the compile that
// follows it, so that a readiness check can wait for a joiner's snapshot
// to be in the list, not only for some list.
func TestCurrent(t *testing.T) {
	st, err := clusterstate.New(clusterstate.Config{Zones: []clusterstate.ZoneConfig{{Name: Zone}}})
	if err != nil {
		t.Fatal(err)
	}
	var l List
	if l.Current() {
		t.Fatal("Current before any compile")
	}
	if _, err := l.Refresh(st, Zone); err != nil {
		t.Fatal(err)
	}
	if !l.Current() {
		t.Fatal("not Current right after a compile of an unchanged zone")
	}
	// A merged entry, as from a snapshot.
	e := clusterstate.Entry{Zone: Zone, Key: "192.0.2.7", Version: 1, Origin: 7, Expires: time.Now().Add(time.Hour).UnixNano()}
	if applied, _ := st.Merge([]clusterstate.Entry{e}); applied != 1 {
		t.Fatalf("merge applied %d", applied)
	}
	if l.Current() {
		t.Fatal("Current after a merge that is not compiled yet")
	}
	if _, err := l.Refresh(st, Zone); err != nil {
		t.Fatal(err)
	}
	if !l.Current() || !l.Set().Contains(netip.MustParseAddr("192.0.2.7")) {
		t.Fatal("the compile after the merge is not Current or lacks the entry")
	}
}

// The compiled set answers as a plain scan of its prefixes would, for
// random prefixes of every length and random addresses near them.
func TestSetMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			b[0], b[1], b[2] = 0x20, 0x01, byte(r.IntN(4)) // a small space, so addresses hit
			for i := 3; i < 16; i++ {
				b[i] = byte(r.IntN(256))
			}
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	var keys []string
	var prefixes []netip.Prefix
	for range 300 {
		v6 := r.IntN(2) == 0
		a := addr(v6)
		p, _ := a.Prefix(8 + r.IntN(a.BitLen()-7)) // no /0 that would match every address
		keys = append(keys, p.String())
		prefixes = append(prefixes, p)
	}
	s, bad := Compile(keys)
	if len(bad) != 0 {
		t.Fatal(bad)
	}
	for range 20000 {
		a := addr(r.IntN(2) == 0)
		want := slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
		if got := s.Contains(a); got != want {
			t.Fatalf("Contains(%v) = %v, scan says %v", a, got, want)
		}
	}
}
