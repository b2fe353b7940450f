package filter

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
)

var _ Headers = (*exchange.Header)(nil)
var _ Headers = HTTPHeader(nil)
var _ routing.Request = (*HTTPRequest)(nil)
var _ routing.Request = ExchangeRequest{}

func TestModifyHeaders(t *testing.T) {
	m := &routing.HeaderModifier{
		Set:    []routing.Header{{Name: "X-Set", Value: "new"}},
		Add:    []routing.Header{{Name: "X-Add", Value: "b"}},
		Remove: []string{"X-Gone"},
	}
	check := func(name string, h Headers, get func(string) []string) {
		t.Helper()
		ModifyHeaders(m, h)
		if got := get("X-Set"); len(got) != 1 || got[0] != "new" {
			t.Errorf("%s: X-Set = %v", name, got)
		}
		if got := get("X-Add"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Errorf("%s: X-Add = %v", name, got)
		}
		if got := get("X-Gone"); len(got) != 0 {
			t.Errorf("%s: X-Gone = %v", name, got)
		}
	}
	hh := http.Header{"X-Set": {"old", "older"}, "X-Add": {"a"}, "X-Gone": {"x"}}
	check("net/http", HTTPHeader(hh), http.Header(hh).Values)
	var eh exchange.Header
	eh.Add("x-set", "old")
	eh.Add("x-add", "a")
	eh.Add("x-gone", "x")
	eh.Add("x-set", "older")
	check("exchange", &eh, func(n string) []string {
		var out []string
		for _, f := range eh.Fields() {
			if exchange.EqualFold(f.Name, n) {
				out = append(out, f.Value)
			}
		}
		return out
	})
	ModifyHeaders(nil, HTTPHeader(hh)) // nil modifier is a no-op
}

func TestLocation(t *testing.T) {
	full := &routing.PathModifier{Type: routing.ReplaceFullPath, Value: "/new"}
	pre := &routing.PathModifier{Type: routing.ReplacePrefixMatch, Value: "/v2"}
	cases := []struct {
		name   string
		r      routing.Redirect
		prefix string
		t      Target
		want   string
	}{
		{"hostname only, listener port 80", routing.Redirect{Hostname: "example.org", ListenerPort: 80}, "/", Target{"http", "gw:80", "/a", ""}, "http://example.org/a"},
		{"scheme change drops the port", routing.Redirect{Scheme: "https", ListenerPort: 80}, "/", Target{"http", "example.com", "/a", "q=1"}, "https://example.com/a?q=1"},
		{"explicit port", routing.Redirect{Port: 8443, Scheme: "https", ListenerPort: 80}, "/", Target{"http", "example.com:80", "/", ""}, "https://example.com:8443/"},
		{"well-known explicit port omitted", routing.Redirect{Port: 443, Scheme: "https"}, "/", Target{"http", "example.com", "/", ""}, "https://example.com/"},
		{"listener port kept", routing.Redirect{Hostname: "x.test", ListenerPort: 8080}, "/", Target{"http", "a:8080", "/", ""}, "http://x.test:8080/"},
		{"no listener port: request port", routing.Redirect{}, "/", Target{"http", "a:9000", "/p", ""}, "http://a:9000/p"},
		{"full path", routing.Redirect{Path: full}, "/", Target{"https", "a", "/old/x", ""}, "https://a/new"},
		{"prefix path", routing.Redirect{Path: pre}, "/v1", Target{"https", "a:443", "/v1/users", ""}, "https://a/v2/users"},
		{"ipv6 host", routing.Redirect{Scheme: "https"}, "/", Target{"http", "[::1]:80", "/", ""}, "https://[::1]/"},
	}
	for _, c := range cases {
		if got := Location(&c.r, c.prefix, c.t); got != c.want {
			t.Errorf("%s: Location = %q, want %q", c.name, got, c.want)
		}
	}
	if RedirectStatus(&routing.Redirect{}) != 302 || RedirectStatus(&routing.Redirect{StatusCode: 301}) != 301 {
		t.Error("RedirectStatus")
	}
}

func TestRewrite(t *testing.T) {
	tg := Target{Scheme: "http", Host: "a.example:80", Path: "/prefix/one/two"}
	Rewrite(&routing.Rewrite{Hostname: "b.example", Path: &routing.PathModifier{Type: routing.ReplacePrefixMatch, Value: "/one"}}, "/prefix/one", &tg)
	if tg.Host != "b.example" || tg.Path != "/one/two" {
		t.Errorf("Rewrite = %+v", tg)
	}
	Rewrite(nil, "/", &tg)
	if tg.Path != "/one/two" {
		t.Error("nil rewrite changed the target")
	}
}

func TestRequestViews(t *testing.T) {
	u, _ := url.Parse("http://h/p?a=1&b=x%20y&a=2&c")
	hr := &HTTPRequest{R: &http.Request{Method: "PUT", URL: u, Header: http.Header{"X-V": {"1", "2"}}}}
	var eh exchange.Header
	eh.Add("x-v", "1")
	eh.Add("X-V", "2")
	er := ExchangeRequest{R: &exchange.Request{Method: "PUT", Host: "h:8", Path: "/p", Target: "/p?a=1&b=x%20y&a=2&c", Header: eh}}
	for name, v := range map[string]routing.Request{"net/http": hr, "exchange": er} {
		if v.Method() != "PUT" || v.Path() != "/p" {
			t.Errorf("%s: method/path = %s %s", name, v.Method(), v.Path())
		}
		for q, want := range map[string]string{"a": "1", "b": "x y", "c": ""} {
			if got, ok := v.Query(q); !ok || got != want {
				t.Errorf("%s: Query(%q) = %q %v, want %q", name, q, got, ok, want)
			}
		}
		if _, ok := v.Query("A"); ok {
			t.Errorf("%s: query names must be case-sensitive", name)
		}
		if got, ok := v.Header("x-v"); !ok || got[0] != '1' {
			t.Errorf("%s: Header = %q %v", name, got, ok)
		}
	}
	if got, _ := hr.Header("X-V"); got != "1,2" {
		t.Errorf("repeated header = %q, want 1,2", got)
	}
	if got, _ := er.Header("x-V"); got != "1,2" {
		t.Errorf("repeated exchange field = %q, want 1,2 (routing.Request joins them)", got)
	}
	if got, ok := er.Header("host"); !ok || got != "h:8" {
		t.Errorf("exchange Host = %q %v, want the authority", got, ok)
	}
	if n := testing.AllocsPerRun(100, func() { er.Query("c") }); n != 0 {
		t.Errorf("ExchangeRequest.Query allocates %v times", n)
	}
}

func FuzzQueryValue(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "a", "=x", "a=%zz", "a+b=c%20d&&", ""} {
		f.Add(s, "a")
	}
	f.Fuzz(func(t *testing.T, q, name string) {
		got, ok := QueryValue(q, name)
		vals, err := url.ParseQuery(q)
		if err != nil {
			return // url.ParseQuery refuses what we read leniently
		}
		want, wantOK := vals[name]
		if ok != (wantOK && len(want) > 0) || (ok && got != want[0]) {
			t.Fatalf("QueryValue(%q, %q) = %q %v; url.ParseQuery: %q", q, name, got, ok, want)
		}
	})
}
