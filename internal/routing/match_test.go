package routing

import (
	"testing"
)

func be(name string) *Backend { return &Backend{Name: name} }

func vhost(name string, routes ...Route) *VirtualHost {
	SortRoutes(routes)
	return &VirtualHost{Name: name, Routes: routes}
}

func prefix(p, backend string) Route {
	return Route{PathType: PathPrefix, Path: p, Backend: be(backend)}
}

func exact(p, backend string) Route {
	return Route{PathType: PathExact, Path: p, Backend: be(backend)}
}

func TestPrefixMatch(t *testing.T) {
	cases := []struct {
		prefix, path string
		want         bool
	}{
		{"/", "/", true},
		{"/", "/anything/at/all", true},
		{"/", "", true},
		{"", "/x", true},
		{"/foo", "/foo", true},
		{"/foo", "/foo/", true},
		{"/foo", "/foo/bar", true},
		{"/foo", "/foobar", false},
		{"/foo", "/fo", false},
		{"/foo", "/", false},
		{"/foo", "", false},
		{"/foo", "/FOO", false},
		{"/foo/", "/foo", true},
		{"/foo/", "/foo/", true},
		{"/foo/", "/foo/bar", true},
		{"/foo/", "/foobar", false},
		{"/foo/bar", "/foo/bar/baz", true},
		{"/foo/bar", "/foo/barbaz", false},
		{"/foo/bar", "/foo", false},
		{"/foo//", "/foo/", true}, // only one trailing "/" is ignored
		{"/foo//", "/foo", false},
	}
	for _, c := range cases {
		if got := PrefixMatch(c.prefix, c.path); got != c.want {
			t.Errorf("PrefixMatch(%q, %q) = %v, want %v", c.prefix, c.path, got, c.want)
		}
	}
}

func TestVirtualHostMatch(t *testing.T) {
	vh := vhost("a",
		prefix("/", "root"),
		prefix("/foo", "foo"),
		prefix("/foo/bar/", "foobar"),
		exact("/foo", "exact-foo"),
		exact("/foo/bar/baz", "exact-baz"),
		Route{PathType: PathImplementationSpecific, Path: "/impl", Backend: be("impl")},
	)
	cases := []struct {
		path, want string
	}{
		{"/", "root"},
		{"/x", "root"},
		{"/foo", "exact-foo"}, // Exact beats Prefix
		{"/foo/", "foo"},
		{"/foobar", "root"},
		{"/foo/bar", "foobar"}, // longest prefix wins
		{"/foo/bar/", "foobar"},
		{"/foo/bar/baz", "exact-baz"},
		{"/foo/bar/baz/", "foobar"},
		{"/foo/barn", "foo"},
		{"/impl/x", "impl"},
		{"/implx", "root"},
	}
	for _, c := range cases {
		r := vh.Match(c.path)
		if r == nil || r.Backend.Name != c.want {
			t.Errorf("Match(%q) = %v, want %s", c.path, r, c.want)
		}
	}
	noRoot := vhost("b", prefix("/api", "api"))
	if r := noRoot.Match("/other"); r != nil {
		t.Errorf("Match(/other) = %v, want nil", r)
	}
	if r := (&VirtualHost{}).Match("/"); r != nil {
		t.Errorf("empty vhost matched %v", r)
	}
}

func TestSortRoutes(t *testing.T) {
	routes := []Route{
		{PathType: PathPrefix, Path: "/", Source: "a/x"},
		{PathType: PathImplementationSpecific, Path: "/ab", Source: "a/x"},
		{PathType: PathPrefix, Path: "/abc/", Source: "a/y"},
		{PathType: PathPrefix, Path: "/abc", Source: "a/x"},
		{PathType: PathExact, Path: "/a", Source: "a/x"},
		{PathType: PathExact, Path: "/abcdef", Source: "a/x"},
	}
	SortRoutes(routes)
	want := []string{"=/abcdef", "=/a", "/abc a/x", "/abc/ a/y", "/ab a/x", "/ a/x"}
	for i, r := range routes {
		got := r.Path + " " + r.Source
		if r.PathType == PathExact {
			got = "=" + r.Path
		}
		if got != want[i] {
			t.Errorf("routes[%d] = %q, want %q", i, got, want[i])
		}
	}
}

func testRoutes() *HTTPRoutes {
	return &HTTPRoutes{
		Hosts: map[string]*VirtualHost{
			"foo.com":     vhost("foo.com", prefix("/", "foo")),
			"bar.foo.com": vhost("bar.foo.com", prefix("/", "bar-exact")),
			"api.foo.com": vhost("api.foo.com", prefix("/v1", "api-v1")),
		},
		Wildcards: map[string]*VirtualHost{
			"foo.com": vhost("*.foo.com", prefix("/", "wild")),
		},
		CatchAll:       vhost("", prefix("/", "catchall")),
		DefaultBackend: be("default"),
	}
}

func TestHTTPRoutesBackend(t *testing.T) {
	r := testRoutes()
	cases := []struct {
		host, path, want, vh string
	}{
		{"foo.com", "/", "foo", "foo.com"},
		{"FOO.com", "/", "foo", "foo.com"},
		{"foo.com:8443", "/", "foo", "foo.com"},
		{"foo.com.", "/", "foo", "foo.com"},
		{"foo.com.:80", "/x", "foo", "foo.com"},
		{"bar.foo.com", "/", "bar-exact", "bar.foo.com"}, // exact beats wildcard
		{"baz.foo.com", "/", "wild", "*.foo.com"},
		{"BAZ.Foo.COM:1", "/", "wild", "*.foo.com"},
		{"a.baz.foo.com", "/", "catchall", ""}, // wildcard is one label
		{".foo.com", "/", "catchall", ""},
		{"other.org", "/", "catchall", ""},
		{"", "/", "catchall", ""},
		{"[::1]:8443", "/", "catchall", ""},
		{"api.foo.com", "/v1/x", "api-v1", "api.foo.com"},
		{"api.foo.com", "/v2", "default", "api.foo.com"}, // no route in chosen vhost
	}
	for _, c := range cases {
		b, vh := r.Backend(c.host, c.path)
		if b == nil || b.Name != c.want {
			t.Errorf("Backend(%q, %q) = %v, want %s", c.host, c.path, b, c.want)
		}
		if vh == nil || vh.Name != c.vh {
			t.Errorf("Backend(%q, %q) vhost = %v, want %q", c.host, c.path, vh, c.vh)
		}
	}

	r.CatchAll = nil
	r.DefaultBackend = nil
	if b, vh := r.Backend("nothing.org", "/"); b != nil || vh != nil {
		t.Errorf("no catch-all: got %v %v, want nil nil", b, vh)
	}
	if b, vh := r.Backend("api.foo.com", "/v2"); b != nil || vh == nil {
		t.Errorf("no default: got %v %v, want nil backend and the vhost", b, vh)
	}
	if route, vh := (&HTTPRoutes{}).Match("x", "/"); route != nil || vh != nil {
		t.Errorf("empty routes matched %v %v", route, vh)
	}
}

func TestStripPort(t *testing.T) {
	cases := map[string]string{
		"a.com":      "a.com",
		"a.com:80":   "a.com",
		"a.com:":     "a.com",
		"[::1]:443":  "::1",
		"[::1]":      "::1",
		"[::1":       "[::1",
		"::1":        "::1",
		"1.2.3.4:80": "1.2.3.4",
		"":           "",
	}
	for in, want := range cases {
		if got := stripPort(in); got != want {
			t.Errorf("stripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLongHost(t *testing.T) {
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a'
	}
	r := testRoutes()
	if _, vh := r.Backend(string(long), "/"); vh == nil || vh.Name != "" {
		t.Errorf("overlong host: vhost %v, want catch-all", vh)
	}
}

func TestTLSHostsLookup(t *testing.T) {
	h := &TLSHosts{
		Exact: map[string]*TLSHost{
			"a.com":   {Name: "a.com"},
			"x.b.com": {Name: "x.b.com"},
		},
		Wildcards: map[string]*TLSHost{"b.com": {Name: "*.b.com"}},
		Default:   &TLSHost{Name: ""},
	}
	cases := map[string]string{
		"a.com":     "a.com",
		"A.COM":     "a.com",
		"a.com.":    "a.com",
		"x.b.com":   "x.b.com",
		"y.b.com":   "*.b.com",
		"Y.B.com.":  "*.b.com",
		"b.com":     "",
		"z.y.b.com": "",
		"":          "",
		"unknown":   "",
	}
	for sni, want := range cases {
		got := h.Lookup(sni)
		if got == nil || got.Name != want {
			t.Errorf("Lookup(%q) = %v, want %q", sni, got, want)
		}
	}
	h.Default = nil
	if got := h.Lookup("unknown"); got != nil {
		t.Errorf("Lookup without default = %v, want nil", got)
	}
}

func TestPassthroughFor(t *testing.T) {
	tbl := &Table{Passthrough: map[string]*Backend{
		"db.example.com":  be("db"),
		"*.example.com":   be("wild"),
		"*.x.example.com": be("wild-x"),
	}}
	cases := map[string]string{
		"db.example.com":    "db",
		"DB.example.com.":   "db",
		"a.example.com":     "wild",
		"a.x.example.com":   "wild-x",
		"a.b.c.example.com": "",
		"example.com":       "",
		".example.com":      "",
		"":                  "",
		"a.other.org":       "",
	}
	for sni, want := range cases {
		got := tbl.PassthroughFor(sni)
		if (got == nil) != (want == "") || (got != nil && got.Name != want) {
			t.Errorf("PassthroughFor(%q) = %v, want %q", sni, got, want)
		}
	}
	if got := (&Table{}).PassthroughFor("db.example.com"); got != nil {
		t.Errorf("empty table passthrough = %v", got)
	}
	// Gateway API wildcards (TLSRoute hostnames) match any number of
	// labels, the longest suffix first; a one-label entry still wins.
	gw := &Table{
		Passthrough:         map[string]*Backend{"*.com": be("com"), "*.example.com": be("ex"), "abc.example.com": be("abc")},
		PassthroughSuffixes: map[string]*Backend{"com": be("com"), "example.com": be("ex")},
	}
	for sni, want := range map[string]string{
		"abc.example.com":   "abc",
		"other.example.com": "ex",
		"a.b.example.com":   "ex",
		"a.b.other.com":     "com",
		"x.com":             "com",
		"com":               "",
		"non.matching.org":  "",
	} {
		got := gw.PassthroughFor(sni)
		if (got == nil) != (want == "") || (got != nil && got.Name != want) {
			t.Errorf("Gateway wildcards: PassthroughFor(%q) = %v, want %q", sni, got, want)
		}
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	r := testRoutes()
	tbl := &Table{
		HTTP: *r,
		TLS: TLSHosts{
			Exact:     map[string]*TLSHost{"foo.com": {Name: "foo.com"}},
			Wildcards: map[string]*TLSHost{"foo.com": {Name: "*.foo.com"}},
		},
		Passthrough:         map[string]*Backend{"*.pt.com": be("pt")},
		PassthroughSuffixes: map[string]*Backend{"com": be("com")},
	}
	checks := map[string]func(){
		"Backend exact":         func() { tbl.HTTP.Backend("Bar.Foo.com:8443", "/x/y") },
		"Backend wildcard":      func() { tbl.HTTP.Backend("Zed.foo.com", "/x/y") },
		"Backend catch-all":     func() { tbl.HTTP.Backend("unknown.org.", "/") },
		"TLS Lookup":            func() { tbl.TLS.Lookup("A.FOO.COM") },
		"PassthroughFor":        func() { tbl.PassthroughFor("Some.PT.com") },
		"PassthroughFor suffix": func() { tbl.PassthroughFor("A.B.Other.com") },
	}
	for name, f := range checks {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	r := testRoutes()
	b.ReportAllocs()
	for b.Loop() {
		r.Backend("Baz.Foo.com:8443", "/some/path")
	}
}

func BenchmarkTLSLookup(b *testing.B) {
	h := &TLSHosts{Wildcards: map[string]*TLSHost{"foo.com": {Name: "*.foo.com"}}}
	b.ReportAllocs()
	for b.Loop() {
		h.Lookup("www.foo.com")
	}
}
