package routing

import (
	"strings"
	"testing"
)

// FuzzLookup checks that the host and SNI lookups never panic, ignore
// case, a port and a trailing dot, and agree with a naive reference.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"foo.com", "Bar.Foo.com:8443", "[::1]:443", "a.b.foo.com.", ".foo.com", "*.foo.com", ":", "[", "x:y:z", ""} {
		f.Add(s)
	}
	r := testRoutes()
	r.Suffixes = map[string]*VirtualHost{"example.org": vhost("*.example.org", prefix("/", "deep")), "org": vhost("*.org", prefix("/", "org"))}
	tbl := &Table{Passthrough: map[string]*Backend{"*.foo.com": be("pt-wild"), "foo.com": be("pt")}}
	f.Fuzz(func(t *testing.T, host string) {
		got := r.Lookup(host)
		if want := naiveLookup(r, host); got != want {
			t.Fatalf("Lookup(%q) = %v, want %v", host, got, want)
		}
		if r.Lookup(strings.ToUpper(host)) != r.Lookup(strings.ToLower(host)) && isASCII(host) {
			t.Fatalf("Lookup(%q) depends on case", host)
		}
		tbl.PassthroughFor(host)
		r.Backend(host, host)
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// naiveLookup is the allocation-happy reference for HTTPRoutes.Lookup.
func naiveLookup(r *HTTPRoutes, host string) *VirtualHost {
	h := stripPort(host)
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > maxHostLen {
		return r.CatchAll
	}
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	h = b.String()
	if vh := r.Hosts[h]; vh != nil {
		return vh
	}
	if label, suffix, ok := strings.Cut(h, "."); ok && label != "" && suffix != "" {
		if vh := r.Wildcards[suffix]; vh != nil {
			return vh
		}
		for {
			label, rest, ok := strings.Cut(suffix, ".")
			if !ok || label == "" || rest == "" {
				break
			}
			if vh := r.Suffixes[rest]; vh != nil {
				return vh
			}
			suffix = rest
		}
	}
	return r.CatchAll
}
