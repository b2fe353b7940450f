package routing

import (
	"regexp"
	"strings"
	"testing"
)

// fakeRequest is a Request over plain maps.
type fakeRequest struct {
	method, path string
	headers      map[string]string // lowercase names
	query        map[string]string
}

func (r fakeRequest) Method() string { return r.method }
func (r fakeRequest) Path() string   { return r.path }
func (r fakeRequest) Header(n string) (string, bool) {
	v, ok := r.headers[strings.ToLower(n)]
	return v, ok
}
func (r fakeRequest) Query(n string) (string, bool) { v, ok := r.query[n]; return v, ok }

func TestMatchesRequest(t *testing.T) {
	version := regexp.MustCompile(`^v[0-9]+$`)
	rt := Route{
		PathType: PathPrefix, Path: "/api", Scope: ScopeTLS, Method: "POST",
		Headers: []ValueMatch{{Name: "X-Env", Value: "prod"}, {Name: "version", Type: MatchRegex, Regex: version}},
		Query:   []ValueMatch{{Name: "Debug", Value: "1"}},
	}
	ok := fakeRequest{method: "POST", path: "/api/x",
		headers: map[string]string{"x-env": "prod", "version": "v2"}, query: map[string]string{"Debug": "1"}}
	cases := []struct {
		name string
		mod  func(*fakeRequest)
		tls  bool
		want bool
	}{
		{"all conditions", func(*fakeRequest) {}, true, true},
		{"plain listener", func(*fakeRequest) {}, false, false},
		{"path", func(r *fakeRequest) { r.path = "/apix" }, true, false},
		{"method", func(r *fakeRequest) { r.method = "GET" }, true, false},
		{"header value", func(r *fakeRequest) { r.headers = map[string]string{"x-env": "dev", "version": "v2"} }, true, false},
		{"header missing", func(r *fakeRequest) { r.headers = map[string]string{"version": "v2"} }, true, false},
		{"header regex", func(r *fakeRequest) { r.headers = map[string]string{"x-env": "prod", "version": "beta"} }, true, false},
		{"query name is case-sensitive", func(r *fakeRequest) { r.query = map[string]string{"debug": "1"} }, true, false},
		{"query value", func(r *fakeRequest) { r.query = map[string]string{"Debug": "0"} }, true, false},
	}
	for _, c := range cases {
		req := ok
		c.mod(&req)
		if got := rt.MatchesRequest(req, c.tls); got != c.want {
			t.Errorf("%s: MatchesRequest = %v, want %v", c.name, got, c.want)
		}
	}
	if rt.Matches("/api") {
		t.Error("a route with conditions matched a bare path")
	}
	re := Route{PathType: PathRegex, Path: `^/pkg\.Svc/[^/]+$`, PathRegex: regexp.MustCompile(`^/pkg\.Svc/[^/]+$`)}
	if !re.MatchesRequest(fakeRequest{path: "/pkg.Svc/Get"}, false) || re.MatchesRequest(fakeRequest{path: "/pkg.Svc/a/b"}, false) {
		t.Error("regex path match wrong")
	}
}

func TestScopeAllows(t *testing.T) {
	for _, c := range []struct {
		s         Scope
		tls, want bool
	}{{ScopeAll, true, true}, {ScopeAll, false, true}, {ScopePlain, false, true}, {ScopePlain, true, false}, {ScopeTLS, true, true}, {ScopeTLS, false, false}} {
		if got := c.s.Allows(c.tls); got != c.want {
			t.Errorf("Scope(%d).Allows(%v) = %v", c.s, c.tls, got)
		}
	}
}

func TestPick(t *testing.T) {
	a, b := be("a"), be("b")
	f := &Filters{Redirect: &Redirect{StatusCode: 301}}
	rt := Route{Backends: []WeightedBackend{{Backend: a, Weight: 1}, {Backend: nil, Weight: 2}, {Backend: b, Weight: 0}, {Backend: b, Weight: 3, Filters: f}}}
	counts := map[string]int{}
	for n := uint32(0); n < 600; n++ {
		got, gf, ok := rt.Pick(n)
		switch {
		case !ok:
			counts["500"]++
		case got == b && gf == f:
			counts["b"]++
		case got == a && gf == nil:
			counts["a"]++
		default:
			t.Fatalf("Pick(%d) = %v %v %v", n, got, gf, ok)
		}
	}
	// n mod 6 walks the cumulative weights 1, 2, 3 exactly.
	if counts["a"] != 100 || counts["500"] != 200 || counts["b"] != 300 {
		t.Errorf("counts = %v, want a:100 500:200 b:300", counts)
	}
	if _, _, ok := (&Route{}).Pick(0); ok {
		t.Error("route without backends picked one")
	}
	if _, _, ok := (&Route{Backends: []WeightedBackend{{Backend: a}}}).Pick(7); ok {
		t.Error("zero weights picked a backend")
	}
	if got, _, ok := (&Route{Backend: a}).Pick(9); !ok || got != a {
		t.Error("Ingress backend not picked")
	}
	if n := testingAllocs(func() { rt.Pick(5) }); n != 0 {
		t.Errorf("Pick allocates %v times", n)
	}
}

func TestReplacePath(t *testing.T) {
	full := &PathModifier{Type: ReplaceFullPath, Value: "/one"}
	cases := []struct {
		m                  *PathModifier
		prefix, path, want string
	}{
		{nil, "/a", "/a/b", "/a/b"},
		{full, "/full/one", "/full/one/two", "/one"},
		{&PathModifier{Type: ReplacePrefixMatch, Value: "/one"}, "/prefix/one", "/prefix/one/two", "/one/two"},
		{&PathModifier{Type: ReplacePrefixMatch, Value: "/"}, "/strip-prefix", "/strip-prefix/three", "/three"},
		{&PathModifier{Type: ReplacePrefixMatch, Value: "/"}, "/strip-prefix", "/strip-prefix", "/"},
		{&PathModifier{Type: ReplacePrefixMatch, Value: "/bar"}, "/foo/", "/foo/", "/bar/"},
		{&PathModifier{Type: ReplacePrefixMatch, Value: "/bar/"}, "/foo", "/foo/baz", "/bar/baz"},
		{&PathModifier{Type: ReplacePrefixMatch, Value: "/bar"}, "/foo", "/foo", "/bar"},
		{&PathModifier{Type: ReplacePrefixMatch, Value: "/x"}, "/", "/a/b", "/x/a/b"},
	}
	for _, c := range cases {
		if got := ReplacePath(c.m, c.prefix, c.path); got != c.want {
			t.Errorf("ReplacePath(%v, %q, %q) = %q, want %q", c.m, c.prefix, c.path, got, c.want)
		}
	}
}

func TestDeepWildcards(t *testing.T) {
	gw := vhost("*.example.com", prefix("/", "gw"))
	deeper := vhost("*.b.example.com", prefix("/", "deeper"))
	r := &HTTPRoutes{
		Hosts:     map[string]*VirtualHost{},
		Wildcards: map[string]*VirtualHost{"example.com": gw, "b.example.com": deeper},
		Suffixes:  map[string]*VirtualHost{"example.com": gw, "b.example.com": deeper},
		CatchAll:  vhost("", prefix("/", "catchall")),
	}
	for host, want := range map[string]string{
		"a.example.com":     "*.example.com",
		"x.a.example.com":   "*.example.com",
		"x.b.example.com":   "*.b.example.com",
		"y.x.b.example.com": "*.b.example.com",
		"example.com":       "",
		"a.example.org":     "",
	} {
		if got := r.Lookup(host); got == nil || got.Name != want {
			t.Errorf("Lookup(%q) = %v, want %q", host, got, want)
		}
	}
	if n := testingAllocs(func() { r.Lookup("y.x.b.example.com") }); n != 0 {
		t.Errorf("deep wildcard lookup allocates %v times", n)
	}
}

func TestSortGatewayPrecedence(t *testing.T) {
	routes := []Route{
		{PathType: PathPrefix, Path: "/", Order: 1, Source: "r1"},
		{PathType: PathPrefix, Path: "/", Order: 2, Query: make([]ValueMatch, 1)},
		{PathType: PathPrefix, Path: "/", Order: 3, Headers: make([]ValueMatch, 1)},
		{PathType: PathPrefix, Path: "/", Order: 4, Headers: make([]ValueMatch, 2)},
		{PathType: PathPrefix, Path: "/", Order: 5, Method: "GET"},
		{PathType: PathPrefix, Path: "/a", Order: 9},
		{PathType: PathRegex, Path: "/a.*", Order: 0},
		{PathType: PathExact, Path: "/", Order: 7},
		{PathType: PathPrefix, Path: "/", Order: 0, Source: "ingress"},
	}
	SortRoutes(routes)
	var got []string
	for _, r := range routes {
		got = append(got, r.Path+"#"+string(rune('0'+r.Order)))
	}
	want := "/#7 /a#9 /#5 /#4 /#3 /#2 /#0 /#1 /a.*#0"
	if strings.Join(got, " ") != want {
		t.Errorf("order = %v, want %s", got, want)
	}
}

func testingAllocs(f func()) float64 { return testing.AllocsPerRun(100, f) }
