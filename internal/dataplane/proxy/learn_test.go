package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// sessionBackend is an application server with sessions of its own, like
// a servlet container: a request without a JSESSIONID it issued gets a new
// one (Set-Cookie); with reissue false it accepts any JSESSIONID (sessions
// in a store the endpoints share) and sets none. It answers its name.
type sessionBackend struct {
	name    string
	reissue bool
	mu      sync.Mutex
	issued  map[string]bool
	n       atomic.Int64
	srv     *httptest.Server
}

func newSessionBackend(t testing.TB, name string, reissue bool) *sessionBackend {
	t.Helper()
	sb := &sessionBackend{name: name, reissue: reissue, issued: map[string]bool{}}
	sb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("JSESSIONID")
		sb.mu.Lock()
		known := err == nil && (sb.issued[c.Value] || !sb.reissue)
		if !known {
			v := fmt.Sprintf("%s-%d", sb.name, sb.n.Add(1))
			sb.issued[v] = true
			w.Header().Add("Set-Cookie", "JSESSIONID="+v+"; Path=/; HttpOnly")
		}
		sb.mu.Unlock()
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, sb.name)
	}))
	t.Cleanup(sb.srv.Close)
	return sb
}

// learnReplica is one replica's Handler with its own sticky zone; its
// writes are queued in pending until the test replicates them, so the
// test decides when the mesh has delivered.
type learnReplica struct {
	fe      *frontEnd
	reg     *prometheus.Registry
	store   *clusterstate.Store
	mu      sync.Mutex
	pending []clusterstate.Entry
}

func newLearnReplica(t *testing.T, tb *tables, origin uint64) *learnReplica {
	t.Helper()
	lr := &learnReplica{reg: prometheus.NewRegistry()}
	var err error
	lr.store, err = clusterstate.New(clusterstate.Config{Zones: []clusterstate.ZoneConfig{{Name: "sticky"}}, Origin: origin,
		Publish: func(e clusterstate.Entry) {
			lr.mu.Lock()
			defer lr.mu.Unlock()
			lr.pending = append(lr.pending, e)
		}})
	if err != nil {
		t.Fatal(err)
	}
	view, err := lr.store.View("sticky")
	if err != nil {
		t.Fatal(err)
	}
	_, lr.fe = newProxy(t, tb, Config{Sticky: view, AffinityKey: []byte("cluster key"), Registerer: lr.reg})
	return lr
}

// replicate delivers every replica's queued writes to the others.
func replicate(rs ...*learnReplica) {
	for _, from := range rs {
		from.mu.Lock()
		es := from.pending
		from.pending = nil
		from.mu.Unlock()
		for _, to := range rs {
			if to != from {
				to.store.Merge(es)
			}
		}
	}
}

func (lr *learnReplica) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	v, _ := testkit.MetricSum(t, lr.reg, name, map[string]string{label: value})
	return v
}

// learnClient is a browser with a jar that keeps only the cookies it is
// told to keep (JSESSIONID always; the bridge cookie unless dropBridge).
type learnClient struct {
	dropBridge bool
	cookies    map[string]string
}

func (c *learnClient) get(t *testing.T, r *learnReplica, path string) (body string, status int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.fe.URL+path, nil)
	req.Host = "app.example.com"
	var pairs []string
	for n, v := range c.cookies {
		pairs = append(pairs, n+"="+v)
	}
	if len(pairs) > 0 {
		req.Header.Set("Cookie", strings.Join(pairs, "; "))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == LearnBridgeCookie && c.dropBridge {
			continue
		}
		if c.cookies == nil {
			c.cookies = map[string]string{}
		}
		c.cookies[ck.Name] = ck.Value
	}
	return string(b), resp.StatusCode
}

func learnTable(gen uint64, eps ...string) *routing.Table {
	b := be("default/app:80", eps...)
	b.Learn = &routing.LearnAffinity{Cookie: "JSESSIONID", Timeout: time.Hour}
	return table(gen, vhost("app.example.com", prefix("/", b)))
}

// Two replicas share a session the backend set through one of them: the
// learning response carries the bridge cookie, which routes the session
// on the other replica before the table entry reaches it; once it has,
// the table alone routes it (a client without the bridge cookie), with no
// further writes. A client that drops the bridge cookie is balanced in the
// replication window, which is what the bridge is for.
func TestStickyLearnAcrossReplicas(t *testing.T) {
	bes := []*sessionBackend{newSessionBackend(t, "a", true), newSessionBackend(t, "b", true), newSessionBackend(t, "c", true)}
	var holder tables
	holder.Store(learnTable(1, addrOf(bes[0].srv), addrOf(bes[1].srv), addrOf(bes[2].srv)))
	r1, r2 := newLearnReplica(t, &holder, 1), newLearnReplica(t, &holder, 2)

	c := &learnClient{}
	owner, _ := c.get(t, r1, "/")
	if c.cookies["JSESSIONID"] == "" || c.cookies[LearnBridgeCookie] == "" {
		t.Fatalf("cookies after the first response: %v", c.cookies)
	}
	if got := r1.metric(t, "meshgate_sticky_writes_total", "reason", "learned"); got != 1 {
		t.Fatalf("learned writes %v, want 1", got)
	}
	// Not replicated yet: replica 2 routes by the bridge cookie, every time.
	for i := range 6 {
		if got, _ := c.get(t, r2, "/"); got != owner {
			t.Fatalf("request %d in the replication window reached %s, the session is on %s", i, got, owner)
		}
	}
	if got := r2.metric(t, "meshgate_sticky_lookups_total", "result", "bridge"); got != 6 {
		t.Fatalf("bridge lookups %v, want 6", got)
	}
	// Without the bridge cookie the window is a miss: balanced, and the
	// backend that gets it issues a new session (the cost of the window).
	dropper := &learnClient{dropBridge: true}
	first, _ := dropper.get(t, r1, "/")
	old := dropper.cookies["JSESSIONID"]
	missed := false
	for range 3 { // round robin over 3 endpoints: one of 3 tries lands elsewhere
		if got, _ := dropper.get(t, r2, "/"); got != first {
			missed = true
			break
		}
	}
	if !missed || r2.metric(t, "meshgate_sticky_lookups_total", "result", "miss") == 0 {
		t.Fatalf("a bridgeless client stayed on %s in the replication window (misses %v)", first,
			r2.metric(t, "meshgate_sticky_lookups_total", "result", "miss"))
	}
	if dropper.cookies["JSESSIONID"] == old {
		t.Fatal("the balanced request kept its session on another endpoint")
	}

	replicate(r1, r2)
	c.dropBridge, c.cookies = true, map[string]string{"JSESSIONID": c.cookies["JSESSIONID"]}
	for i := range 20 {
		r := []*learnReplica{r1, r2}[i%2]
		if got, _ := c.get(t, r, "/"); got != owner {
			t.Fatalf("request %d after replication reached %s, the session is on %s", i, got, owner)
		}
	}
	if got := r1.metric(t, "meshgate_sticky_lookups_total", "result", "hit") + r2.metric(t, "meshgate_sticky_lookups_total", "result", "hit"); got != 20 {
		t.Fatalf("hits %v, want 20", got)
	}
	// One write per session: the first, and the new session the miss made.
	writes := r1.metric(t, "meshgate_sticky_writes_total", "reason", "learned") + r2.metric(t, "meshgate_sticky_writes_total", "reason", "learned")
	if writes != 3 {
		t.Fatalf("learned writes %v, want 3 (two sessions of the bridgeless client, one of the other)", writes)
	}
}

// When a session's endpoint leaves the backend, its requests are balanced:
// a backend that issues a new session has it learned; one that accepts the
// session (shared session storage) has the old one relearned on it; a 5xx
// relearns nothing. Either way the session then stays where it landed.
func TestStickyLearnEndpointGone(t *testing.T) {
	for _, reissue := range []bool{true, false} {
		t.Run(fmt.Sprintf("reissue=%v", reissue), func(t *testing.T) {
			bes := []*sessionBackend{newSessionBackend(t, "a", reissue), newSessionBackend(t, "b", reissue), newSessionBackend(t, "c", reissue)}
			eps := map[string]string{}
			for _, b := range bes {
				eps[b.name] = addrOf(b.srv)
			}
			var holder tables
			holder.Store(learnTable(1, eps["a"], eps["b"], eps["c"]))
			r1, r2 := newLearnReplica(t, &holder, 1), newLearnReplica(t, &holder, 2)
			c := &learnClient{dropBridge: true}
			owner, _ := c.get(t, r1, "/")
			replicate(r1, r2)
			var rest []string
			for n, a := range eps {
				if n != owner {
					rest = append(rest, a)
				}
			}
			holder.Store(learnTable(2, rest...))

			if !reissue {
				if _, st := c.get(t, r1, "/fail"); st != http.StatusServiceUnavailable {
					t.Fatalf("status %d", st)
				}
				if got := r1.metric(t, "meshgate_sticky_writes_total", "reason", "relearned"); got != 0 {
					t.Fatalf("a 5xx relearned the session (%v writes)", got)
				}
			}
			moved, _ := c.get(t, r1, "/")
			if moved == owner {
				t.Fatalf("the session reached %s, which left the backend", owner)
			}
			reason := map[bool]string{true: "learned", false: "relearned"}[reissue]
			if got := r1.metric(t, "meshgate_sticky_writes_total", "reason", reason); got < 1 {
				t.Fatalf("%s writes %v after the endpoint left", reason, got)
			}
			if got := r1.metric(t, "meshgate_sticky_lookups_total", "result", "gone"); got < 1 {
				t.Fatalf("gone lookups %v", got)
			}
			replicate(r1, r2)
			for i := range 10 {
				r := []*learnReplica{r1, r2}[i%2]
				if got, _ := c.get(t, r, "/"); got != moved {
					t.Fatalf("request %d reached %s, the session moved to %s", i, got, moved)
				}
			}
		})
	}
}

// learnFixture is a learnState on a real zone with a clock the test moves.
func learnFixture(t testing.TB, now *atomic.Int64) (*learnState, *clusterstate.Store) {
	t.Helper()
	st, err := clusterstate.New(clusterstate.Config{Zones: []clusterstate.ZoneConfig{{Name: "sticky"}}, Origin: 1,
		Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	view, err := st.View("sticky")
	if err != nil {
		t.Fatal(err)
	}
	b := be("ns/app:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
	b.Learn = &routing.LearnAffinity{Cookie: "JSESSIONID", Timeout: time.Hour}
	key := []byte("cluster key")
	return newLearnState(key, newLearnHashers(key), view, newLearnMetrics(), b), st
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// The response side writes once per session: a new value is learned; the
// same value set again on the same endpoint, or used, writes nothing until
// the entry is past half its lifetime, then refreshes it once, and only
// from the session's own endpoint; deleting Set-Cookies and other cookies
// are ignored. Keys are HMACs: the session value is not stored.
func TestStickyLearnWrites(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	ls, st := learnFixture(t, &now)
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	respondWith := func(setCookie string, idx, status int, lr *learnRequest) *exchange.Header {
		var h exchange.Header
		if setCookie != "" {
			h.Add("Set-Cookie", setCookie)
		}
		ls.respond(&h, idx, status, lr, clock(), false)
		return &h
	}
	for _, sc := range []string{"JSESSIONID=; Path=/", "JSESSIONID=x; Max-Age=0", "OTHER=x", "JSESSIONIDX=y"} {
		if h := respondWith(sc, 0, 200, &learnRequest{}); h.Len() != 1 {
			t.Errorf("Set-Cookie %q: response got a bridge cookie", sc)
		}
	}
	if got := counter(ls.writes[writeLearned]); got != 0 {
		t.Fatalf("%v writes from cookies that set no session", got)
	}
	h := respondWith(`JSESSIONID="s1"; Path=/`, 1, 200, &learnRequest{})
	if !strings.HasPrefix(h.Fields()[1].Value, LearnBridgeCookie+"="+ls.bridge.values[1]) {
		t.Fatalf("learning response %v", h.Fields())
	}
	st.Range(func(e clusterstate.Entry) bool {
		if strings.Contains(e.Key, "s1") || len(e.Key) != learnKeyLen || string(e.Value) != "10.0.0.2:80" {
			t.Errorf("entry %q → %q", e.Key, e.Value)
		}
		return true
	})
	if v := h.Fields()[1].Value; strings.Contains(v, "Secure") || !strings.Contains(v, "Max-Age=60") {
		t.Fatalf("bridge cookie on plain HTTP %q", v)
	}
	var tlsResp exchange.Header
	tlsResp.Add("Set-Cookie", "JSESSIONID=s-tls")
	ls.respond(&tlsResp, 0, 200, &learnRequest{}, clock(), true)
	if v := tlsResp.Fields()[1].Value; !strings.HasSuffix(v, "; HttpOnly; Secure") {
		t.Fatalf("bridge cookie on TLS %q", v)
	}
	respondWith("JSESSIONID=s1", 1, 200, &learnRequest{}) // set again, same endpoint
	if got := counter(ls.writes[writeLearned]); got != 2 {
		t.Fatalf("learned writes %v, want 2", got)
	}

	var req exchange.Header
	req.Add("Cookie", "a=b; JSESSIONID=s1")
	use := func(idx int) {
		var lr learnRequest
		if got := ls.lookup(&req, &lr, clockOf(&now)); got != 1 {
			t.Fatalf("lookup %d, want 1", got)
		}
		respondWith("", idx, 200, &lr)
	}
	use(1)
	now.Add(int64(20 * time.Minute))
	use(1)
	if got := counter(ls.writes[writeRefreshed]); got != 0 {
		t.Fatalf("refreshed a fresh entry (%v)", got)
	}
	now.Add(int64(20 * time.Minute)) // 40 of 60 minutes: past half
	use(2)                           // failed over: not a refresh
	if got := counter(ls.writes[writeRefreshed]); got != 0 {
		t.Fatal("a failed-over request refreshed the session onto another endpoint")
	}
	use(1)
	use(1)
	if got := counter(ls.writes[writeRefreshed]); got != 1 {
		t.Fatalf("refreshed writes %v, want 1", got)
	}
	now.Add(int64(59 * time.Minute)) // alive only thanks to the refresh
	use(1)
}

// FuzzLearnCookies: whatever the header fields, lookup and respond do not
// panic, a lookup names an endpoint only for a value that was learned, and
// a learned value is one the Set-Cookie carried.
func FuzzLearnCookies(f *testing.F) {
	for _, s := range []string{"JSESSIONID=s1", "a=1; JSESSIONID=s1;", `JSESSIONID="q"; Max-Age=-1`, "JSESSIONID", ";;=;", "JSESSIONID=x; Max-Age=abc"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, cookie, setCookie string) {
		var now atomic.Int64
		now.Store(time.Unix(1000, 0).UnixNano())
		ls, st := learnFixture(t, &now)
		var req, resp exchange.Header
		req.Add("Cookie", cookie)
		var lr learnRequest
		if i := ls.lookup(&req, &lr, clockOf(&now)); i != -1 {
			t.Fatalf("empty table pinned %d", i)
		}
		resp.Add("Set-Cookie", setCookie)
		ls.respond(&resp, 0, 200, &lr, time.Unix(0, now.Load()), false)
		n := 0
		st.Range(func(clusterstate.Entry) bool { n++; return true })
		if n > 1 || (n == 1 && !strings.Contains(setCookie, "JSESSIONID=")) {
			t.Fatalf("Set-Cookie %q wrote %d entries", setCookie, n)
		}
		var lr2 learnRequest
		if i := ls.lookup(&req, &lr2, clockOf(&now)); i != -1 && i != 0 {
			t.Fatalf("lookup pinned %d, only endpoint 0 was learned", i)
		}
	})
}

// stickyProxy serves bench.example.com → the canned backend with sticky
// learn, its session already learned, and a client carrying it.
func stickyProxy(tb testing.TB) (*benchClient, *learnState) {
	st, err := clusterstate.New(clusterstate.Config{Zones: []clusterstate.ZoneConfig{{Name: "sticky"}}})
	if err != nil {
		tb.Fatal(err)
	}
	view, err := st.View("sticky")
	if err != nil {
		tb.Fatal(err)
	}
	var holder tables
	b := be("bench", rawBackend(tb))
	b.Learn = &routing.LearnAffinity{Cookie: "JSESSIONID", Timeout: time.Hour}
	holder.Store(table(1, vhost("bench.example.com", prefix("/", b))))
	h, fe := newProxy(tb, &holder, Config{Sticky: view})
	ls := h.up.backend(h.up.cur.Load(), b).learn
	var resp exchange.Header
	resp.Add("Set-Cookie", "JSESSIONID=0123456789ABCDEF0123456789ABCDEF")
	ls.respond(&resp, 0, 200, &learnRequest{}, time.Now(), false)
	bc := newBenchClient(tb, strings.TrimPrefix(fe.URL, "http://"))
	bc.req = []byte("GET /api/v1/items?x=1 HTTP/1.1\r\nHost: bench.example.com\r\nUser-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\n" +
		"Cookie: lang=en; JSESSIONID=0123456789ABCDEF0123456789ABCDEF\r\n\r\n")
	return bc, ls
}

// BenchmarkStickyLookup measures the request side of sticky learn on a
// hit: cookie scan, key MAC, table Get, endpoint index.
func BenchmarkStickyLookup(b *testing.B) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	ls, _ := learnFixture(b, &now)
	var resp, req exchange.Header
	resp.Add("Set-Cookie", "JSESSIONID=0123456789ABCDEF0123456789ABCDEF")
	ls.respond(&resp, 1, 200, &learnRequest{}, time.Unix(0, now.Load()), false)
	req.Add("Cookie", "lang=en; JSESSIONID=0123456789ABCDEF0123456789ABCDEF; theme=dark")
	var lr learnRequest
	b.ReportAllocs()
	for b.Loop() {
		if ls.lookup(&req, &lr, clockOf(&now)) != 1 {
			b.Fatal("miss")
		}
	}
}

// BenchmarkProxyH1Sticky is BenchmarkProxyH1 with sticky learn on and the
// client's session in the table: run the two side by side for the cost.
func BenchmarkProxyH1Sticky(b *testing.B) {
	bc, _ := stickyProxy(b)
	bc.roundTrip(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bc.roundTrip(b)
	}
}

// clockOf is the time a test clock holds.
func clockOf(now *atomic.Int64) time.Time { return time.Unix(0, now.Load()) }
