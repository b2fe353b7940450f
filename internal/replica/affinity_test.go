package replica

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestCookieAffinityAcrossReplicas: the cookie replica 1 sets pins the
// client to one endpoint on both replicas (each verifies the other's MAC
// with the key derived from the cluster's secret, no lookup); when that
// endpoint leaves the backend, the next request is re-pinned with a new
// cookie that both replicas honour; a forged cookie is ignored.
func TestCookieAffinityAcrossReplicas(t *testing.T) {
	cert := selfSigned(t, "app.example.com")
	eps := map[string]string{} // endpoint address → name
	var addrs []string
	for _, name := range []string{"a", "b", "c"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		addr := s.Listener.Addr().String()
		eps[addr] = name
		addrs = append(addrs, addr)
	}
	affTable := func(gen uint64, endpoints []string) *routing.Table {
		tb := table(gen, cert, "")
		b := tb.HTTP.Hosts["app.example.com"].Routes[0].Backend
		b.Endpoints = endpoints
		b.Affinity = &routing.CookieAffinity{Name: "PIN", MaxAge: time.Hour, SameSite: "Lax"}
		return tb
	}
	tc := startCluster(t, 2, nil)
	publish := func(tb *routing.Table) {
		for i, h := range tc.holders {
			h.Store(tb)
			testkit.WaitFor(t, 5*time.Second, "table applied", func() bool {
				return tc.reps[i].Applied().Load().Generation == tb.Generation
			})
		}
	}
	publish(affTable(2, addrs))

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(i int, cookie string) (body, setCookie string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+tc.reps[i].HTTPAddr().String()+"/", nil)
		req.Host = "app.example.com"
		if cookie != "" {
			req.Header.Set("Cookie", "other=1; "+cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("replica %d: %d %s", i+1, resp.StatusCode, b)
		}
		return string(b), resp.Header.Get("Set-Cookie")
	}
	first, sc := get(0, "")
	if !strings.HasPrefix(sc, "PIN=") || !strings.Contains(sc, "; Path=/; Max-Age=3600; SameSite=Lax; HttpOnly") {
		t.Fatalf("Set-Cookie %q", sc)
	}
	cookie, _, _ := strings.Cut(sc, ";")
	// Round robin would spread 100 requests over the three endpoints; the
	// cookie keeps every one on the first, on either replica.
	for n := range 100 {
		body, again := get(n%2, cookie)
		if body != first || again != "" {
			t.Fatalf("request %d on replica %d reached %s (Set-Cookie %q), pinned to %s", n, n%2+1, body, again, first)
		}
	}
	// A forged cookie (a MAC of another endpoint's) is balanced and
	// replaced.
	if _, again := get(1, "PIN="+strings.SplitN(strings.TrimPrefix(cookie, "PIN="), ".", 2)[0]+".AAAAAAAAAAAAAAAAAAAAAA"); again == "" {
		t.Fatal("a forged cookie was honoured")
	}

	// The pinned endpoint leaves: the next request is re-pinned and stays.
	var rest []string
	for _, a := range addrs {
		if eps[a] != first {
			rest = append(rest, a)
		}
	}
	publish(affTable(3, rest))
	second, sc2 := get(1, cookie)
	if second == first || !strings.HasPrefix(sc2, "PIN=") {
		t.Fatalf("after %s left: reached %s, Set-Cookie %q", first, second, sc2)
	}
	cookie2, _, _ := strings.Cut(sc2, ";")
	for n := range 50 {
		if body, again := get(n%2, cookie2); body != second || again != "" {
			t.Fatalf("re-pinned request %d reached %s (Set-Cookie %q), want %s", n, body, again, second)
		}
	}
}
