package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

func TestRouting(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	beA, beB := be("default/a:80", addrOf(a)), be("default/b:80", addrOf(b))
	empty := be("default/empty:80")
	tbl := table(1,
		vhost("app.example.com", exact("/exact", beB), prefix("/api", beB), prefix("/", beA)),
		vhost("*.wild.example.com", prefix("/", beB)),
		vhost("down.example.com", prefix("/", empty)),
	)
	withDefault := table(2, vhost("app.example.com", prefix("/only", beA)))
	withDefault.HTTP.DefaultBackend = beB

	var holder tables
	_, fe := newProxy(t, &holder, Config{})

	tests := []struct {
		name        string
		tbl         *routing.Table
		host, path  string
		wantStatus  int
		wantBackend string
		wantBody    string
	}{
		{"no table", nil, "app.example.com", "/", 503, "", "no routing table"},
		{"prefix root", tbl, "app.example.com", "/x/y", 200, "a", ""},
		{"prefix api", tbl, "app.example.com", "/api/v1", 200, "b", ""},
		{"prefix not element-wise", tbl, "app.example.com", "/apix", 200, "a", ""},
		{"exact", tbl, "app.example.com", "/exact", 200, "b", ""},
		{"host with port and case", tbl, "App.Example.COM:8080", "/", 200, "a", ""},
		{"wildcard", tbl, "x.wild.example.com", "/", 200, "b", ""},
		{"wildcard two labels", tbl, "x.y.wild.example.com", "/", 404, "", "no route"},
		{"unknown host", tbl, "other.example.com", "/", 404, "", "no route"},
		{"no endpoints", tbl, "down.example.com", "/", 503, "", "no endpoints"},
		{"default backend for unknown host", withDefault, "zzz", "/", 200, "b", ""},
		{"default backend for unmatched path", withDefault, "app.example.com", "/nope", 200, "b", ""},
		{"route beats default", withDefault, "app.example.com", "/only/x", 200, "a", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tbl != nil {
				holder.Store(tc.tbl)
			}
			req, _ := http.NewRequest("GET", fe.URL+tc.path, nil)
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantBackend != "" && !strings.Contains(string(body), `"backend":"`+tc.wantBackend+`"`) {
				t.Fatalf("body %s, want backend %s", body, tc.wantBackend)
			}
			if !strings.Contains(string(body), tc.wantBody) {
				t.Fatalf("body %q, want %q", body, tc.wantBody)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	a := newBackend(t, "a")
	var holder tables
	holder.Store(table(1, vhost("app.example.com", prefix("/", be("a", addrOf(a))))))
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

	spoof := http.Header{}
	spoof.Set("X-Forwarded-For", "203.0.113.7")
	spoof.Set("X-Forwarded-Proto", "spoofed")
	spoof.Set("X-Forwarded-Host", "evil.example.com")
	spoof.Set("X-Real-IP", "198.51.100.1")
	spoof.Set("Forwarded", "for=192.0.2.1")
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		wantXFF string
	}{
		// A client's own X-Forwarded-For is kept only from a trusted
		// forwarder; anyone else could forge the chain.
		{"trusted forwarder", loopback, "203.0.113.7, 127.0.0.1"},
		{"untrusted client", nil, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fe := newProxy(t, &holder, Config{TrustedForwarders: tc.trusted})
			c := &http.Client{Transport: &headerTransport{h: spoof}}
			resp, e := do(t, c, "GET", fe.URL+"/p?q=1", "app.example.com", nil)
			if e == nil {
				t.Fatalf("status %d, no echo", resp.StatusCode)
			}
			checks := map[string]string{
				"X-Forwarded-For":   tc.wantXFF,
				"X-Forwarded-Proto": "http",
				"X-Forwarded-Host":  "app.example.com",
				"X-Real-Ip":         "127.0.0.1",
				"Forwarded":         "",
			}
			for k, want := range checks {
				if got := strings.Join(e.Header[k], ","); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if e.Host != "app.example.com" {
				t.Errorf("backend saw Host %q, want app.example.com", e.Host)
			}
		})
	}
}

// headerTransport adds fixed headers to every request.
type headerTransport struct{ h http.Header }

func (ht *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range ht.h {
		r.Header[k] = v
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestRedirect(t *testing.T) {
	a := newBackend(t, "a")
	vh := vhost("secure.example.com", prefix("/", be("a", addrOf(a))))
	vh.TLS, vh.SSLRedirect = true, true
	var holder tables
	holder.Store(table(1, vh, vhost("plain.example.com", prefix("/", be("a", addrOf(a))))))

	tests := []struct {
		name      string
		port      int
		host, uri string
		want      string
	}{
		{"drop port", 0, "secure.example.com:8080", "/a/b?x=1", "https://secure.example.com/a/b?x=1"},
		{"443 dropped", 443, "secure.example.com", "/", "https://secure.example.com/"},
		{"mapped port", 8443, "secure.example.com:8080", "/p", "https://secure.example.com:8443/p"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, fe := newProxy(t, &holder, Config{HTTPSPort: tc.port})
			resp, _ := do(t, noRedirect(), "GET", fe.URL+tc.uri, tc.host, nil)
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != tc.want {
				t.Fatalf("got %d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), tc.want)
			}
			// A host without SSLRedirect is proxied.
			resp, e := do(t, noRedirect(), "GET", fe.URL+tc.uri, "plain.example.com", nil)
			if resp.StatusCode != 200 || e == nil {
				t.Fatalf("plain host: status %d", resp.StatusCode)
			}
		})
	}
}

// TestServerHeader: every response names meshgate as its server, proxied
// (replacing the upstream's) or answered locally.
func TestServerHeader(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Server", "upstream/1.0")
	}))
	t.Cleanup(up.Close)
	var holder tables
	holder.Store(table(1, vhost("a.example.com", prefix("/", be("a", addrOf(up)))), vhost("plain.example.com", prefix("/", be("b", addrOf(newBackend(t, "b")))))))
	_, fe := newProxy(t, &holder, Config{})
	for _, host := range []string{"a.example.com", "plain.example.com", "unknown.example.com"} {
		resp, _ := do(t, noRedirect(), "GET", fe.URL+"/", host, nil)
		if got := resp.Header.Values("Server"); len(got) != 1 || got[0] != "meshgate" {
			t.Errorf("Host %s: status %d, Server %q, want [meshgate]", host, resp.StatusCode, got)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	a := newBackend(t, "a")
	limited := be("limited", addrOf(a))
	limited.MaxBodyBytes = 1000
	var holder tables
	holder.Store(table(1,
		vhost("limited.example.com", prefix("/", limited)),
		vhost("default.example.com", prefix("/", be("a", addrOf(a))))))
	_, fe := newProxy(t, &holder, Config{MaxBodyBytes: 2000})

	tests := []struct {
		name    string
		host    string
		size    int
		chunked bool
		want    int
	}{
		{"under backend limit", "limited.example.com", 1000, false, 200},
		{"over backend limit", "limited.example.com", 1001, false, 413},
		{"over backend limit chunked", "limited.example.com", 5000, true, 413},
		{"under default limit", "default.example.com", 2000, false, 200},
		{"over default limit", "default.example.com", 2001, false, 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(strings.Repeat("x", tc.size))
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: chunked encoding
			}
			resp, e := do(t, http.DefaultClient, "POST", fe.URL+"/upload", tc.host, body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 200 && e.Body != tc.size {
				t.Fatalf("backend got %d bytes, want %d", e.Body, tc.size)
			}
		})
	}
}

func TestRoundRobinAndFailover(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	dead := deadAddr(t)
	var holder tables
	reg := prometheus.NewRegistry()
	h, fe := newProxy(t, &holder, Config{Registerer: reg})

	t.Run("spread", func(t *testing.T) {
		holder.Store(table(1, vhost("rr.example.com", prefix("/", be("rr", addrOf(a), addrOf(b))))))
		counts := map[string]int{}
		for range 20 {
			_, e := do(t, http.DefaultClient, "GET", fe.URL+"/", "rr.example.com", nil)
			counts[e.Backend]++
		}
		if counts["a"] != 10 || counts["b"] != 10 {
			t.Fatalf("round robin spread %v, want 10/10", counts)
		}
	})
	t.Run("failover", func(t *testing.T) {
		holder.Store(table(2, vhost("rr.example.com", prefix("/", be("rr2", dead, addrOf(a), addrOf(b))))))
		for i := range 30 {
			resp, e := do(t, http.DefaultClient, "GET", fe.URL+"/", "rr.example.com", nil)
			if resp.StatusCode != 200 || e == nil {
				t.Fatalf("request %d: status %d", i, resp.StatusCode)
			}
		}
		// The dead endpoint failed once, was ejected, and not tried again
		// within the ejection period.
		if got, _ := testkit.MetricSum(t, reg, "meshgate_http_upstream_errors_total", nil); got != 0 {
			t.Fatalf("client-visible upstream errors %v, want 0", got)
		}
		var health *endpointHealth
		for _, bs := range h.up.cur.Load().backends {
			if bs.b.Name == "rr2" {
				health = bs.health[0]
			}
		}
		// Ejection lasts 1s, then 2s, 4s: however slow the machine, 30
		// requests see the dead endpoint only a few times, not a third.
		if health == nil || health.fails.Load() < 1 || health.fails.Load() > 3 {
			t.Fatalf("dead endpoint tried %v times in 30 requests, want 1..3 (ejected)", health.fails.Load())
		}
	})
	t.Run("POST not retried", func(t *testing.T) {
		holder.Store(table(3, vhost("rr.example.com", prefix("/", be("rr3", dead)))))
		resp, _ := do(t, http.DefaultClient, "POST", fe.URL+"/", "rr.example.com", strings.NewReader("x"))
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
	})
}

func TestResponseTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	b := be("slow", addrOf(slow))
	b.ResponseTimeout = 100 * time.Millisecond
	var holder tables
	holder.Store(table(1, vhost("slow.example.com", prefix("/", b))))
	_, fe := newProxy(t, &holder, Config{})
	resp, _ := do(t, http.DefaultClient, "GET", fe.URL+"/", "slow.example.com", nil)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
}

func TestWebSocketEcho(t *testing.T) {
	ws := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	})
	var holder tables
	holder.Store(table(1, vhost("ws.example.com", prefix("/", be("ws", addrOf(ws))))))
	_, fe := newProxy(t, &holder, Config{})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(fe.URL, "http")+"/chat",
		&websocket.DialOptions{Host: "ws.example.com"})
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for i, msg := range []string{"hello", "world", strings.Repeat("z", 30000)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if string(got) != "echo:"+msg {
			t.Fatalf("message %d: got %d bytes, want echo", i, len(got))
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestTableSwapUnderLoad(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	var holder tables
	holder.Store(table(0, vhost("swap.example.com", prefix("/", be("a", addrOf(a))))))
	_, fe := newProxy(t, &holder, Config{})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200 && ctx.Err() == nil; i++ {
				req, _ := http.NewRequest("GET", fe.URL+"/", nil)
				req.Host = "swap.example.com"
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					if resp != nil {
						resp.Body.Close()
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok.Add(1)
			}
		}()
	}
	// A new table every 5 ms while the clients run: a paced load, the
	// ticker sets the rate of swaps and waits for nothing.
	pace := time.NewTicker(5 * time.Millisecond)
	defer pace.Stop()
	for gen := uint64(1); gen <= 50 && ctx.Err() == nil; gen++ {
		eps := []string{addrOf(a)}
		if gen%2 == 0 {
			eps = []string{addrOf(b), addrOf(a)}
		}
		holder.Store(table(gen, vhost("swap.example.com", prefix("/", be("swap", eps...)))))
		<-pace.C
	}
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("ok %d failed %d, want no failures", ok.Load(), failed.Load())
	}
}

func TestMetrics(t *testing.T) {
	a := newBackend(t, "a")
	var holder tables
	holder.Store(table(1, vhost("m.example.com", prefix("/", be("default/a:80", addrOf(a))))))
	reg := prometheus.NewRegistry()
	_, fe := newProxy(t, &holder, Config{Registerer: reg})
	for range 3 {
		do(t, http.DefaultClient, "GET", fe.URL+"/", "m.example.com", nil)
	}
	do(t, http.DefaultClient, "BREW", fe.URL+"/", "m.example.com", nil)
	do(t, http.DefaultClient, "GET", fe.URL+"/", "unknown", nil)
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"default/a:80", "GET", "2xx"}, 3},
		{[]string{"default/a:80", "OTHER", "2xx"}, 1},
		{[]string{"none", "GET", "4xx"}, 1},
	} {
		got, _ := testkit.MetricSum(t, reg, "meshgate_http_requests_total",
			map[string]string{"backend": tc.labels[0], "method": tc.labels[1], "code": tc.labels[2]})
		if got != tc.want {
			t.Errorf("requests%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if _, n := testkit.MetricSum(t, reg, "meshgate_http_request_duration_seconds", nil); n != 2 {
		t.Errorf("duration series = %d, want 2", n)
	}
}

func newBackendFunc(t testing.TB, f http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return s
}
