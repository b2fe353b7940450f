package tlsconfig

import (
	"crypto/tls"
	"errors"
	"net/netip"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
)

// TestBuildFrontends checks that each frontend of a table gets a Set of
// its own: the same name resolves to each Gateway's own certificate, and
// to each port's own on one address, a name only the replica's table
// serves is refused on a frontend, and an address or port without a
// frontend serves nothing.
func TestBuildFrontends(t *testing.T) {
	own, g1, g2 := certificate(t, "own.example.com"), certificate(t, "g1"), certificate(t, "g2")
	own2 := certificate(t, "g1-8443")
	a1, a2 := netip.MustParseAddrPort("127.0.82.1:443"), netip.MustParseAddrPort("127.0.82.2:443")
	a1b := netip.MustParseAddrPort("127.0.82.1:8443")
	host := func(name string, c *tls.Certificate) *routing.TLSHost {
		return &routing.TLSHost{Name: name, Certificate: c}
	}
	fe := func(c *tls.Certificate) *routing.Table {
		return &routing.Table{TLS: routing.TLSHosts{Exact: map[string]*routing.TLSHost{"shared.example.com": host("shared.example.com", c)}}}
	}
	t1 := &routing.Table{
		TLS:       routing.TLSHosts{Exact: map[string]*routing.TLSHost{"own.example.com": host("own.example.com", own)}},
		Frontends: map[netip.AddrPort]*routing.Table{a1: fe(g1), a2: fe(g2), a1b: fe(own2)},
	}
	rec := &recorder{}
	set := Build(t1, rec)
	if len(rec.hosts) != 4 {
		t.Fatalf("session layer configured %d hosts, want 4 (the replica's and one per frontend)", len(rec.hosts))
	}
	if set.For(netip.AddrPort{}) != set {
		t.Fatal("the zero address is not the replica's own Set")
	}
	for _, c := range []struct {
		addr netip.AddrPort
		cert *tls.Certificate
	}{{a1, g1}, {a2, g2}, {a1b, own2}} {
		fs := set.For(c.addr)
		if fs.Table() != t1.Frontends[c.addr] {
			t.Errorf("%s: Set of another table", c.addr)
		}
		cfg, err := fs.Config("shared.example.com")
		if err != nil {
			t.Fatalf("%s: %v", c.addr, err)
		}
		if string(cfg.Certificates[0].Certificate[0]) != string(c.cert.Certificate[0]) {
			t.Errorf("%s: presented another Gateway's certificate", c.addr)
		}
		if _, err := fs.Config("own.example.com"); !errors.Is(err, ErrNoCertificate) {
			t.Errorf("%s: a name of the replica's own table resolved on a frontend (err %v)", c.addr, err)
		}
	}
	if _, err := set.Config("shared.example.com"); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("a frontend's name resolved on the replica's own addresses (err %v)", err)
	}
	for _, a := range []string{"127.0.82.3:443", "127.0.82.1:9443"} {
		gone := set.For(netip.MustParseAddrPort(a))
		if gone.Table() == nil || gone.Len() != 0 || gone.HasTLS12() {
			t.Errorf("unknown address %s: table %v, %d hosts", a, gone.Table(), gone.Len())
		}
		if _, err := gone.Config("shared.example.com"); !errors.Is(err, ErrNoCertificate) {
			t.Errorf("unknown address %s served a handshake (err %v)", a, err)
		}
	}
}
