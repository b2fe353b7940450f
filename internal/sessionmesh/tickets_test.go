package sessionmesh

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"testing"
	"time"
)

func TestTicketRingRotation(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	r := newTicketRing("a")
	if keys := r.tick("a", time.Hour, t0); len(keys) != 1 {
		t.Fatalf("leader without key generated %d", len(keys))
	}
	first := r.ring.Load().active
	if keys := r.tick("a", time.Hour, t0.Add(30*time.Minute)); keys != nil {
		t.Fatal("rotated before the interval")
	}
	for i := 1; i <= 8; i++ {
		if keys := r.tick("a", time.Hour, t0.Add(time.Duration(i)*time.Hour)); keys == nil {
			t.Fatalf("no rotation at hour %d", i)
		}
	}
	st := r.ring.Load()
	if len(st.keys) != maxRingKeys || st.active == first || st.active != st.keys[0] {
		t.Fatalf("ring %d keys, active rotated=%v", len(st.keys), st.active != first)
	}
}

func TestTicketRingFollowerAndTakeover(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a, b := newTicketRing("a"), newTicketRing("b")
	a.tick("a", time.Hour, t0)
	b.tick("b", time.Hour, t0.Add(time.Second)) // b's provisional key is newer
	// b sees a online: a leads; b adopts a's key even though its own is newer.
	b.merge(a.shared(), t0)
	if keys := b.tick("a", time.Hour, t0.Add(2*time.Second)); keys != nil {
		t.Fatal("follower broadcast keys")
	}
	if b.ring.Load().active.id != a.ring.Load().active.id {
		t.Fatal("follower does not encrypt under the leader's key")
	}
	aKey := a.ring.Load().active.id
	// a dies: b takes over and generates a fresh key at once, keeping a's.
	keys := b.tick("b", time.Hour, t0.Add(3*time.Second))
	if keys == nil {
		t.Fatal("new leader did not generate a key")
	}
	st := b.ring.Load()
	if st.active.Generator != "b" || st.active.Created != t0.Add(3*time.Second).UnixNano() {
		t.Fatalf("active key %s@%d", st.active.Generator, st.active.Created)
	}
	found := false
	for _, k := range st.keys {
		found = found || k.id == aKey
	}
	if !found {
		t.Fatal("old leader's key dropped: its tickets would stop resuming")
	}
}

func TestNoteRotation(t *testing.T) {
	n, err := New(Config{NodeName: "x", TicketKeyRotation: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	n.noteRotation(10 * time.Minute)
	n.noteRotation(2 * time.Hour)
	n.noteRotation(0)
	if got := time.Duration(n.rotation.Load()); got != 10*time.Minute {
		t.Fatalf("rotation %v", got)
	}
}

func TestSessionIDs(t *testing.T) {
	n, _ := New(Config{NodeName: "x"})
	other, _ := New(Config{NodeName: "y"}) // different (random) MAC key
	var key [16]byte
	key[3] = 7
	id := n.mintID(key)
	origin, k, ok := n.parseID(id)
	if !ok || origin != n.id || k != key {
		t.Fatal("round trip failed")
	}
	tests := []struct {
		name string
		id   []byte
	}{
		{"empty", nil},
		{"short", id[:40]},
		{"bad version", append([]byte{9}, id[1:]...)},
		{"flipped key bit", func() []byte { b := append([]byte(nil), id...); b[10] ^= 1; return b }()},
		{"flipped mac bit", func() []byte { b := append([]byte(nil), id...); b[40] ^= 1; return b }()},
	}
	for _, tc := range tests {
		if _, _, ok := n.parseID(tc.id); ok {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, _, ok := other.parseID(id); ok {
		t.Error("id accepted under another cluster's MAC key")
	}
	if allocs := testing.AllocsPerRun(100, func() { n.parseID(id) }); allocs != 0 {
		t.Errorf("parseID allocates %v", allocs)
	}
}

func TestBindingLowercasesSNI(t *testing.T) {
	var hb hostBinding
	hb[0] = 1
	if hb.bind("A.Example.COM") != hb.bind("a.example.com") {
		t.Fatal("binding is case-sensitive")
	}
	if hb.bind("a.example.com") == hb.bind("b.example.com") {
		t.Fatal("binding ignores the name")
	}
	other := hb
	other[0] = 2
	if hb.bind("a.example.com") == other.bind("a.example.com") {
		t.Fatal("binding ignores the host")
	}
}

func TestMACIsHMAC(t *testing.T) {
	n, _ := New(Config{NodeName: "x"})
	var key [16]byte
	id := n.mintID(key)
	// Recover the key from the pads and check against crypto/hmac.
	var k [64]byte
	for i := range k {
		k[i] = n.ipad[i] ^ 0x36
	}
	h := hmac.New(sha256.New, k[:32])
	h.Write(id[:idMACOff])
	if want := h.Sum(nil)[:16]; !hmac.Equal(want, id[idMACOff:]) {
		t.Fatal("id MAC differs from HMAC-SHA256")
	}
}

// Sealing a ticket costs one allocation beyond SessionState.Bytes (the
// ticket itself), and opening one costs one beyond ParseSessionState (the
// plaintext, which ParseSessionState then owns): no second buffer, no copy.
func TestTicketSealingAllocations(t *testing.T) {
	ca, _ := newCA(t)
	n := newTestNode(t, ca, "tickets", TicketKeys, func(c *Config) { c.ListenAddr = "" })
	cl := &client{cache: &fixedCache{}, max: tls.VersionTLS13, sni: "a.example.com"}
	cl.mustConnect(t, n.tlsAddr)
	id := identity(t, cl.cache, "")
	cert, _ := serverCert()
	th := &ticketHost{n: n.Node, hb: newHostBinding(testHost(cert, TicketKeys)), lifetime: time.Minute}
	cs := tls.ConnectionState{ServerName: "a.example.com", Version: tls.VersionTLS13}
	ss, err := th.unwrap(id, cs)
	if err != nil || ss == nil {
		t.Fatalf("unwrap of the test server's ticket: %v, %v", ss, err)
	}
	state, err := ss.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	bytesAllocs := testing.AllocsPerRun(100, func() { _, _ = ss.Bytes() })
	if got := testing.AllocsPerRun(100, func() { _, _ = th.wrap(cs, ss) }); got > bytesAllocs+1 {
		t.Errorf("wrap allocates %v times; SessionState.Bytes alone %v: want at most one more", got, bytesAllocs)
	}
	parseAllocs := testing.AllocsPerRun(100, func() { _, _ = tls.ParseSessionState(state) })
	if got := testing.AllocsPerRun(100, func() { _, _ = th.unwrap(id, cs) }); got > parseAllocs+1 {
		t.Errorf("unwrap allocates %v times; ParseSessionState alone %v: want at most one more", got, parseAllocs)
	}
	// Round trip through the in-place seal.
	tk, err := th.wrap(cs, ss)
	if err != nil {
		t.Fatal(err)
	}
	back, err := th.unwrap(tk, cs)
	if err != nil || back == nil {
		t.Fatalf("a freshly sealed ticket does not open: %v", err)
	}
	if b2, _ := back.Bytes(); !bytes.Equal(b2, state) {
		t.Fatal("state changed through seal and open")
	}
}
