package deny

import (
	"net/netip"
	"testing"
)

// FuzzCanonicalKey: whatever the input, a key that parses canonicalises to
// a fixed point, and the set compiled from it denies its own address.
func FuzzCanonicalKey(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "10.0.0.0/8", "::ffff:10.0.0.0/104", "2001:db8::/32", "fe80::1%eth0", "1.2.3.4/33", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		c, err := CanonicalKey(key)
		if err != nil {
			return
		}
		c2, err := CanonicalKey(c)
		if err != nil || c2 != c {
			t.Fatalf("%q → %q → %q, %v: not a fixed point", key, c, c2, err)
		}
		p, err := parseKey(c)
		if err != nil {
			t.Fatal(err)
		}
		s, bad := Compile([]string{key})
		if len(bad) != 0 || !s.Contains(p.Addr()) {
			t.Fatalf("the set of %q does not deny %v", key, p.Addr())
		}
		if a, err := netip.ParseAddr(c); err == nil && a.Is4In6() {
			t.Fatalf("canonical key %q is IPv4-mapped", c)
		}
	})
}
