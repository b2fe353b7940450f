package sessionmesh

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

// serveScoped serves testHost on n behind a listener that scopes every
// handshake the way the data plane does (tlsconfig.Set.ConfigFor).
func serveScoped(t *testing.T, n *Node) string {
	t.Helper()
	cert, _ := serverCert()
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	n.ConfigureTLS(cfg, testHost(cert, Stateful))
	base := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		return n.ScopeHandshake(cfg, h), nil
	}}
	ln, err := listenOneByte(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// bogusID is a session id issuer mints as its own, MAC-valid and
// unexpired, whose record no replica holds: what a client replaying ids
// whose records were evicted or revoked presents (or a holder of the
// session-id MAC key, who can mint them at will).
func bogusID(issuer *Node) []byte {
	var key store.Key
	rand.Read(key[:])
	return issuer.mintID(key, time.Now().Add(time.Hour).UnixNano())
}

// helloWithPSKs is a TLS 1.3 ClientHello record offering ids as PSK
// identities (binders are random: the server looks identities up before it
// checks the binder of the one it would accept).
func helloWithPSKs(sni string, ids [][]byte) []byte {
	u16 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
	vec16 := func(b, body []byte) []byte { return append(u16(b, len(body)), body...) }
	ext := func(b []byte, typ int, body []byte) []byte { return vec16(u16(b, typ), body) }
	rnd := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }

	var exts []byte
	exts = ext(exts, 0, vec16(nil, vec16([]byte{0}, []byte(sni))))     // server_name
	exts = ext(exts, 10, vec16(nil, u16(nil, 0x001d)))                 // supported_groups: x25519
	exts = ext(exts, 13, vec16(nil, u16(u16(nil, 0x0804), 0x0403)))    // signature_algorithms
	exts = ext(exts, 43, []byte{2, 3, 4})                              // supported_versions: TLS 1.3
	exts = ext(exts, 45, []byte{1, 1})                                 // psk_key_exchange_modes: psk_dhe_ke
	exts = ext(exts, 51, vec16(nil, vec16(u16(nil, 0x001d), rnd(32)))) // key_share
	var idents, binders []byte
	for _, id := range ids {
		idents = append(vec16(idents, id), 0, 0, 0, 0)
		binders = append(append(binders, 32), rnd(32)...)
	}
	exts = ext(exts, extPSK, vec16(vec16(nil, idents), binders)) // pre_shared_key, last

	body := []byte{3, 3}
	body = append(body, rnd(32)...)
	body = append(append(body, 32), rnd(32)...) // legacy_session_id
	body = vec16(body, u16(nil, 0x1301))        // TLS_AES_128_GCM_SHA256
	body = append(body, 1, 0)                   // compression: null
	body = vec16(body, exts)
	hs := append([]byte{1, 0}, u16(nil, len(body))...)
	hs = append(hs, body...)
	return vec16([]byte{22, 3, 1}, hs)
}

// sendHello sends one ClientHello to addr and waits for the server's first
// byte (its answer comes after every identity was looked up).
func sendHello(t *testing.T, addr string, hello []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		t.Fatalf("no answer to the ClientHello: %v", err)
	}
}

// TestRemoteLookupsBounded is the rest of finding 8 of issue 15: every
// MAC-valid, unexpired id a ClientHello offered (up to five) cost a mesh
// round trip to its issuer, for every handshake of every client. Before
// the fix (ScopeHandshake returning cfg unchanged, the data plane's only
// path) each hello of five ids made five remote lookups and each of a
// real client's reconnects one, without limit. Now one per handshake,
// and a source that keeps offering ids no replica holds gets sourceBurst
// of them plus one per sourceRefill.
func TestRemoteLookupsBounded(t *testing.T) {
	nodes, _ := cluster(t, 2, Stateful)
	issuer, b := nodes[0], nodes[1]
	addr := serveScoped(t, b.Node)
	lookups := func() uint64 { return b.m.remoteLookups.Load() }
	start := time.Now()

	// Hand-made hellos of five identities each.
	const hellos = 6
	for range hellos {
		ids := make([][]byte, 5)
		for i := range ids {
			ids[i] = bogusID(issuer.Node)
		}
		sendHello(t, addr, helloWithPSKs("a.example.com", ids))
	}
	if got := lookups(); got != hellos {
		t.Errorf("%d hellos of 5 ids made %d remote lookups, want one per hello", hellos, got)
	}
	if got := b.m.limited[limitHandshake].Load(); got != 4*hellos {
		t.Errorf("limited per handshake: %d, want %d", got, 4*hellos)
	}

	// A real client (crypto/tls) resuming with a bogus id on every
	// reconnect, from the same address.
	real := &client{cache: &fixedCache{}, max: tls.VersionTLS13, sni: "a.example.com"}
	real.mustConnect(t, issuer.tlsAddr)
	_, state, err := real.cache.(*fixedCache).s.ResumptionState()
	if err != nil {
		t.Fatal(err)
	}
	const reconnects = 40
	for range reconnects {
		rs, err := tls.NewResumptionState(bogusID(issuer.Node), state)
		if err != nil {
			t.Fatal(err)
		}
		c := &client{cache: &fixedCache{s: rs}, max: tls.VersionTLS13, sni: "a.example.com"}
		if c.mustConnect(t, addr) {
			t.Fatal("a bogus id resumed")
		}
	}
	// Bound: the bucket starts with sourceBurst tokens, every lookup here
	// misses and takes one, and it refills one per sourceRefill: at most
	// sourceBurst + elapsed/sourceRefill + 1 lookups in all, whatever the
	// number of hellos.
	bound := uint64(sourceBurst + time.Since(start)/sourceRefill + 1)
	if got := lookups(); got > bound {
		t.Errorf("%d hellos and %d reconnects from one address made %d remote lookups, want at most %d",
			hellos, reconnects, got, bound)
	}
	if b.m.limited[limitSource].Load() == 0 {
		t.Error("no lookup refused for the source")
	}
	if got := b.m.misses[missLimited].Load(); got == 0 {
		t.Error("refused lookups not counted as misses")
	}
	// Another address still gets its lookups.
	if !b.sources.allow(netip.MustParsePrefix("192.0.2.1/32"), time.Now()) {
		t.Error("another address is limited too")
	}
}

// The buckets stay within maxSources, and a source's bucket refills.
func TestSourceBucketsBounded(t *testing.T) {
	var s sourceBuckets
	now := time.Unix(1_700_000_000, 0)
	src := netip.MustParsePrefix("198.51.100.7/32")
	for range sourceBurst {
		if !s.allow(src, now) {
			t.Fatal("refused within the burst")
		}
		s.charge(src, now)
	}
	if s.allow(src, now) {
		t.Fatal("allowed past the burst")
	}
	if !s.allow(src, now.Add(sourceRefill)) {
		t.Fatal("not refilled after sourceRefill")
	}
	for i := range 3 * maxSources {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		s.charge(netip.PrefixFrom(a, 32), now)
	}
	if got := s.sourceCount(); got > maxSources {
		t.Fatalf("%d buckets, want at most %d", got, maxSources)
	}
	if got := sourceOf(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}); got.String() != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 source %v, want its /64", got)
	}
}
