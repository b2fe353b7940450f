package proxy

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
)

// gwRoute is a Gateway API style route (no Ingress Backend).
func gwRoute(path string, f *routing.Filters, backends ...routing.WeightedBackend) routing.Route {
	if backends == nil {
		backends = []routing.WeightedBackend{}
	}
	return routing.Route{PathType: routing.PathPrefix, Path: path, Backends: backends, Filters: f, Source: "HTTPRoute default/test", Order: 1}
}

func TestGatewayRouteFeatures(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	ba, bb := be("a", addrOf(a)), be("b", addrOf(b))
	var mirrored atomic.Int32
	mirrorDone := make(chan struct{}, 8)
	ms := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Set") == "1" && r.URL.Path == "/mirror" {
			mirrored.Add(1)
		}
		mirrorDone <- struct{}{}
	}))
	t.Cleanup(ms.Close)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)

	hdrs := &routing.Filters{
		RequestHeaders:  &routing.HeaderModifier{Set: []routing.Header{{Name: "X-Set", Value: "1"}}, Add: []routing.Header{{Name: "X-Add", Value: "2"}}, Remove: []string{"X-Remove"}},
		ResponseHeaders: &routing.HeaderModifier{Set: []routing.Header{{Name: "X-Resp", Value: "yes"}}},
		Mirrors:         []routing.Mirror{{Backend: be("m", addrOf(ms)), PerMillion: 1_000_000}},
	}
	rewrite := &routing.Filters{Rewrite: &routing.Rewrite{Hostname: "internal.test", Path: &routing.PathModifier{Type: routing.ReplacePrefixMatch, Value: "/v2"}}}
	redirect := &routing.Filters{Redirect: &routing.Redirect{Scheme: "https", StatusCode: 301, ListenerPort: 80}}
	methodRoute := gwRoute("/m", nil, routing.WeightedBackend{Backend: bb, Weight: 1})
	methodRoute.Method = "POST"
	headerRoute := gwRoute("/m", nil, routing.WeightedBackend{Backend: ba, Weight: 1})
	headerRoute.Headers = []routing.ValueMatch{{Name: "X-Pick", Type: routing.MatchRegex, Regex: regexp.MustCompile("^a$")}}
	timed := gwRoute("/slow", nil, routing.WeightedBackend{Backend: be("slow", addrOf(slow)), Weight: 1})
	timed.Timeouts.Request = 200 * time.Millisecond
	tls := gwRoute("/tls-only", nil, routing.WeightedBackend{Backend: ba, Weight: 1})
	tls.Scope = routing.ScopeTLS
	routes := []routing.Route{
		gwRoute("/mirror", hdrs, routing.WeightedBackend{Backend: ba, Weight: 1}),
		gwRoute("/v1", rewrite, routing.WeightedBackend{Backend: ba, Weight: 1}),
		gwRoute("/old", redirect),
		gwRoute("/none", nil),
		gwRoute("/split", nil, routing.WeightedBackend{Backend: ba, Weight: 1}, routing.WeightedBackend{Backend: bb, Weight: 1}),
		gwRoute("/broken", nil, routing.WeightedBackend{Backend: nil, Weight: 1}),
		methodRoute, headerRoute, timed, tls,
	}
	routing.SortRoutes(routes)
	var holder tables
	holder.Store(table(1, vhost("gw.test", routes...)))
	_, fe := newProxy(t, &holder, Config{})
	c := noRedirect()

	req, _ := http.NewRequest("GET", fe.URL+"/mirror", nil)
	req.Host = "gw.test"
	req.Header.Set("X-Remove", "x")
	req.Header.Set("X-Add", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Resp") != "yes" {
		t.Errorf("response header modifier not applied: %v", resp.Header)
	}
	<-mirrorDone
	if mirrored.Load() != 1 {
		t.Error("mirror did not receive the modified request")
	}
	_, e := do(t, c, "GET", fe.URL+"/mirror", "gw.test", nil)
	if e.Header.Get("X-Set") != "1" || len(e.Header.Values("X-Add")) != 1 || e.Header.Get("X-Remove") != "" {
		t.Errorf("request headers = %v", e.Header)
	}
	<-mirrorDone

	if _, e := do(t, c, "GET", fe.URL+"/v1/users?q=1", "gw.test", nil); e == nil || e.Host != "internal.test" || e.Path != "/v2/users" {
		t.Errorf("rewrite: %+v", e)
	}
	if resp, _ := do(t, c, "GET", fe.URL+"/old/x?y=1", "gw.test", nil); resp.StatusCode != 301 || resp.Header.Get("Location") != "https://gw.test/old/x?y=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/none", "/broken"} {
		if resp, _ := do(t, c, "GET", fe.URL+p, "gw.test", nil); resp.StatusCode != 500 {
			t.Errorf("%s: status %d, want 500", p, resp.StatusCode)
		}
	}
	seen := map[string]int{}
	for range 40 {
		_, e := do(t, c, "GET", fe.URL+"/split", "gw.test", nil)
		seen[e.Backend]++
	}
	// Each of 40 picks is a fair coin: P(one side never chosen) = 2^-39.
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("weighted split = %v", seen)
	}
	if _, e := do(t, c, "POST", fe.URL+"/m", "gw.test", nil); e == nil || e.Backend != "b" {
		t.Errorf("method match: %+v", e)
	}
	hreq, _ := http.NewRequest("GET", fe.URL+"/m", nil)
	hreq.Host, hreq.Header = "gw.test", http.Header{"X-Pick": {"a"}}
	if resp, err := c.Do(hreq); err != nil || resp.StatusCode != 200 {
		t.Errorf("header match: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, _ := do(t, c, "GET", fe.URL+"/m", "gw.test", nil); resp.StatusCode != 404 {
		t.Errorf("no match: status %d, want 404", resp.StatusCode)
	}
	if resp, _ := do(t, c, "GET", fe.URL+"/slow", "gw.test", nil); resp.StatusCode != 504 {
		t.Errorf("route timeout: status %d, want 504", resp.StatusCode)
	}
	if resp, _ := do(t, c, "GET", fe.URL+"/tls-only", "gw.test", nil); resp.StatusCode != 404 {
		t.Errorf("TLS-only route over plain HTTP: status %d, want 404", resp.StatusCode)
	}
}
