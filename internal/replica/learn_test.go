package replica

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestStickyLearnAcrossReplicas: a session the backend sets through
// replica 1 is recorded in the sticky zone, replicated over the mesh, and
// routes the session on replica 2 from the table alone (the client drops
// the bridge cookie), while round robin would spread it.
func TestStickyLearnAcrossReplicas(t *testing.T) {
	cert := selfSigned(t, "app.example.com")
	var addrs []string
	for _, name := range []string{"a", "b", "c"} {
		var n atomic.Int64
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := r.Cookie("JSESSIONID"); err != nil {
				w.Header().Add("Set-Cookie", "JSESSIONID="+name+"-"+strconv.FormatInt(n.Add(1), 10)+"; Path=/")
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		addrs = append(addrs, s.Listener.Addr().String())
	}
	tc := startCluster(t, 2, nil)
	tb := table(2, cert, "")
	b := tb.HTTP.Hosts["app.example.com"].Routes[0].Backend
	b.Endpoints = addrs
	b.Learn = &routing.LearnAffinity{Cookie: "JSESSIONID", Timeout: time.Hour}
	for i, h := range tc.holders {
		h.Store(tb)
		testkit.WaitFor(t, 5*time.Second, "table applied", func() bool { return tc.reps[i].Applied().Load().Generation == 2 })
	}
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(i int, cookie string) (body string, resp *http.Response) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+tc.reps[i].HTTPAddr().String()+"/", nil)
		req.Host = "app.example.com"
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return string(raw), resp
	}
	owner, resp := get(0, "")
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == "JSESSIONID" {
			session = "JSESSIONID=" + c.Value
		}
	}
	if session == "" || !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "MESHGATE_LEARN=") {
		t.Fatalf("learning response's cookies: %q", resp.Header.Values("Set-Cookie"))
	}
	testkit.WaitFor(t, 5*time.Second, "the session replicated to replica 2", func() bool {
		for _, z := range tc.reps[1].Node().State().Stats() {
			if z.Name == StickyZone {
				return z.Records == 1
			}
		}
		return false
	})
	for n := range 60 {
		if body, resp := get(n%2, "lang=en; "+session); body != owner || len(resp.Header.Values("Set-Cookie")) != 0 {
			t.Fatalf("request %d on replica %d reached %s (Set-Cookie %q), the session is on %s", n, n%2+1, body,
				resp.Header.Values("Set-Cookie"), owner)
		}
	}
	if hits := testkit.MetricValue(t, tc.reps[1].reg, "meshgate_sticky_lookups_total",
		map[string]string{"backend": "ns/app:80", "result": "hit"}); hits != 30 {
		t.Fatalf("replica 2 table hits %v, want 30", hits)
	}
}
