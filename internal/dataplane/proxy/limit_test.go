package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// limitFixture is a proxy whose limiter's clock stands still 100 ms into a
// window, so a window never rolls during a test and counts are exact.
type limitFixture struct {
	h1, h2 *http.Client
	h1URL  string
	h2URL  string
	reg    *prometheus.Registry
	lim    *ratelimit.Limiter
	holder *tables
}

func newLimitFixture(t *testing.T) *limitFixture {
	t.Helper()
	now := time.UnixMilli(1_800_000_000_100)
	lim, err := ratelimit.New(ratelimit.Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	f := &limitFixture{reg: prometheus.NewRegistry(), lim: lim, holder: &tables{}}
	f.reg.MustRegister(lim) // as the mesh node registers its limiter
	h, fe := newProxy(t, f.holder, Config{Limiter: lim, Registerer: f.reg})
	f.h1URL = fe.URL
	f.h2URL = "http://" + newH2CProxy(t, h)
	f.h1 = &http.Client{Transport: &http.Transport{}}
	f.h2 = &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
	t.Cleanup(f.h1.CloseIdleConnections)
	t.Cleanup(f.h2.CloseIdleConnections)
	return f
}

// get sends one request and returns its status and Retry-After.
func (f *limitFixture) get(t *testing.T, c *http.Client, url, host string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/", nil)
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// A rate limit admits its rate per window and answers 429 with
// Retry-After beyond it, on HTTP/1.1 and HTTP/2 alike (one count for
// both: they share the client key); a header key separates clients; the
// allow list is never limited; every decision is counted per limit.
func TestRequestRateLimit(t *testing.T) {
	f := newLimitFixture(t)
	b := newBackend(t, "a")
	byAddr := &routing.RequestLimit{Name: "default/addr", RPS: 3, BurstMultiplier: 2}
	byHdr := &routing.RequestLimit{Name: "default/hdr", RPS: 2, BurstMultiplier: 1, Header: "X-Api-Key"}
	allowed := &routing.RequestLimit{Name: "default/allowed", RPS: 1, BurstMultiplier: 1,
		Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}}
	lr := func(path string, l *routing.RequestLimit) routing.Route {
		r := prefix(path, be("default/a:80", addrOf(b)))
		r.Limit = l
		return r
	}
	f.holder.Store(table(1, vhost("addr.example.com", lr("/", byAddr)), vhost("hdr.example.com", lr("/", byHdr)),
		vhost("allowed.example.com", lr("/", allowed)), vhost("free.example.com", lr("/", nil))))

	// rps 3 × burst 2 = 6 in a 2 s window, split over the two protocols.
	for i := range 6 {
		c, u := f.h1, f.h1URL
		if i%2 == 1 {
			c, u = f.h2, f.h2URL
		}
		if code, _ := f.get(t, c, u, "addr.example.com"); code != 200 {
			t.Fatalf("request %d: %d, want 200", i, code)
		}
	}
	for _, p := range []struct {
		c   *http.Client
		url string
	}{{f.h1, f.h1URL}, {f.h2, f.h2URL}} {
		code, ra := f.get(t, p.c, p.url, "addr.example.com")
		// The window started 100 ms ago and has 1.9 s to go: nothing more is
		// admitted before it ends, so Retry-After is the rounded-up 2 s.
		if code != 429 || ra != "2" {
			t.Fatalf("beyond the rate: %d Retry-After %q, want 429 and 2", code, ra)
		}
	}
	for i := range 3 {
		want := 200
		if i == 2 {
			want = 429
		}
		if code, _ := f.get(t, f.h1, f.h1URL, "hdr.example.com", "X-Api-Key", "alice"); code != want {
			t.Fatalf("alice %d: %d, want %d", i, code, want)
		}
	}
	if code, _ := f.get(t, f.h2, f.h2URL, "hdr.example.com", "X-Api-Key", "bob"); code != 200 {
		t.Fatalf("bob: %d, want 200 (a key of his own)", code)
	}
	// Without the header, the client address is the key (2 more fit).
	for i := range 3 {
		want := 200
		if i == 2 {
			want = 429
		}
		if code, _ := f.get(t, f.h1, f.h1URL, "hdr.example.com"); code != want {
			t.Fatalf("no header %d: %d, want %d", i, code, want)
		}
	}
	for i := range 5 {
		if code, _ := f.get(t, f.h2, f.h2URL, "allowed.example.com"); code != 200 {
			t.Fatalf("allow-listed request %d: %d", i, code)
		}
	}
	if code, _ := f.get(t, f.h1, f.h1URL, "free.example.com"); code != 200 {
		t.Fatalf("unlimited route: %d", code)
	}

	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"meshgate_ratelimit_requests_total", map[string]string{"limit": "default/addr#rps", "result": "admitted"}, 6},
		{"meshgate_ratelimit_requests_total", map[string]string{"limit": "default/addr#rps", "result": "rejected"}, 2},
		{"meshgate_ratelimit_requests_total", map[string]string{"limit": "default/hdr#rps", "result": "admitted"}, 5},
		{"meshgate_request_limit_rejected_total", map[string]string{"limit": "default/addr", "reason": "rate"}, 2},
		{"meshgate_request_limit_rejected_total", map[string]string{"limit": "default/hdr", "reason": "rate"}, 2},
		{"meshgate_request_limit_allowlisted_total", map[string]string{"limit": "default/allowed"}, 5},
		{"meshgate_http_requests_total", map[string]string{"code": "4xx"}, 4},
	} {
		if got, _ := testkit.MetricSum(t, f.reg, m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	if got, _ := testkit.MetricSum(t, f.reg, "meshgate_ratelimit_requests_total", map[string]string{"limit": "default/allowed#rps"}); got != 0 {
		t.Errorf("allow-listed requests reached the limiter: %v", got)
	}
}

// limit-connections bounds one client's requests in flight on this
// replica: HTTP/1.1 connections and HTTP/2 streams of one connection
// alike; a finished request gives its slot back.
func TestRequestConnectionLimit(t *testing.T) {
	f := newLimitFixture(t)
	arrived, release := make(chan struct{}, 4), make(chan struct{})
	slow := newBlockingBackend(t, arrived, release)
	rl := &routing.RequestLimit{Name: "default/conns", Connections: 2, BurstMultiplier: 1}
	r := prefix("/", be("default/slow:80", slow))
	r.Limit = rl
	f.holder.Store(table(1, vhost("c.example.com", r)))

	for _, p := range []struct {
		name string
		c    *http.Client
		url  string
	}{{"http1", f.h1, f.h1URL}, {"h2 streams", f.h2, f.h2URL}} {
		t.Run(p.name, func(t *testing.T) {
			done := make(chan int, 2)
			for range 2 {
				go func() {
					req, _ := http.NewRequest("GET", p.url+"/", nil)
					req.Host = "c.example.com"
					resp, err := p.c.Do(req)
					if err != nil {
						done <- 0
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					done <- resp.StatusCode
				}()
			}
			<-arrived
			<-arrived // both hold a slot, at the backend
			if code, ra := f.get(t, p.c, p.url, "c.example.com"); code != 429 || ra != "1" {
				t.Fatalf("third in flight: %d Retry-After %q, want 429 and 1", code, ra)
			}
			for range 2 {
				release <- struct{}{}
				if code := <-done; code != 200 {
					t.Fatalf("held request: %d", code)
				}
			}
			// Both slots are free again: the next request reaches the backend.
			go func() { <-arrived; release <- struct{}{} }()
			if code, _ := f.get(t, p.c, p.url, "c.example.com"); code != 200 {
				t.Fatalf("after the releases: %d, want 200", code)
			}
		})
	}
	if got, _ := testkit.MetricSum(t, f.reg, "meshgate_request_limit_rejected_total", map[string]string{"limit": "default/conns", "reason": "connections"}); got != 2 {
		t.Errorf("connection rejections %v, want 2", got)
	}
	if got, _ := testkit.MetricSum(t, f.reg, "meshgate_request_limit_clients_in_flight", map[string]string{"limit": "default/conns"}); got != 0 {
		t.Errorf("clients in flight %v after every request finished, want 0", got)
	}
}

// newBlockingBackend answers each request once release yields (or is
// closed, at cleanup), after telling arrived; it returns its address.
func newBlockingBackend(t *testing.T, arrived, release chan struct{}) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(release) }) // runs first: no handler stays blocked
	return addrOf(s)
}

// A table without an Ingress' limit frees the limiter's keys of it (and
// only of it) and its metrics series; a limit that turns from rps to rpm
// frees the rps one.
func TestRequestLimitPruned(t *testing.T) {
	f := newLimitFixture(t)
	b := newBackend(t, "a")
	route := func(host string, l *routing.RequestLimit) *routing.VirtualHost {
		r := prefix("/", be("default/a:80", addrOf(b)))
		r.Limit = l
		return vhost(host, r)
	}
	a := &routing.RequestLimit{Name: "default/a", RPS: 10, BurstMultiplier: 1}
	keep := &routing.RequestLimit{Name: "default/keep", RPS: 10, BurstMultiplier: 1, Header: "X-Key"}
	f.holder.Store(table(1, route("a.example.com", a), route("keep.example.com", keep)))
	for i := range 3 {
		f.get(t, f.h1, f.h1URL, "a.example.com")
		f.get(t, f.h1, f.h1URL, "keep.example.com", "X-Key", strconv.Itoa(i))
	}
	if st := f.lim.Stats(); st.Keys != 4 {
		t.Fatalf("keys %d, want 4", st.Keys)
	}
	f.holder.Store(table(2, route("keep.example.com", keep)))
	if st := f.lim.Stats(); st.Keys != 3 || st.RemovedLimits != 1 || st.RemovedKeys != 1 {
		t.Fatalf("after removing default/a: %+v", st)
	}
	if _, n := testkit.MetricSum(t, f.reg, "meshgate_request_limit_rejected_total", map[string]string{"limit": "default/a"}); n != 0 {
		t.Errorf("%d series of a removed limit", n)
	}
	if _, n := testkit.MetricSum(t, f.reg, "meshgate_ratelimit_requests_total", map[string]string{"limit": "default/a#rps"}); n != 0 {
		t.Errorf("%d limiter series of a removed limit", n)
	}
	if got, _ := testkit.MetricSum(t, f.reg, "meshgate_ratelimit_removed_total", map[string]string{"kind": "keys"}); got != 1 {
		t.Errorf("removed keys metric %v, want 1", got)
	}
	perMinute := &routing.RequestLimit{Name: "default/keep", RPM: 600, BurstMultiplier: 1, Header: "X-Key"}
	f.holder.Store(table(3, route("keep.example.com", perMinute)))
	if st := f.lim.Stats(); st.Keys != 0 || st.RemovedLimits != 2 {
		t.Fatalf("after rps → rpm: %+v", st)
	}
	if code, _ := f.get(t, f.h1, f.h1URL, "keep.example.com", "X-Key", "0"); code != 200 {
		t.Fatalf("under the rpm limit: %d", code)
	}
}
