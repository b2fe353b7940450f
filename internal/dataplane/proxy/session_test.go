package proxy

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
)

// Values of a scoped affinity route only in their scope, even to the same
// backend name and endpoint; an unscoped value is unchanged by the field's
// existence (Ingress cookies issued before it keep routing).
func TestAffinityScope(t *testing.T) {
	key := []byte("cluster key")
	mk := func(scope string) *affinityState {
		return newAffinityState(key, &routing.Backend{Name: "ns/app:80", Endpoints: []string{"10.0.0.1:80"},
			Affinity: &routing.CookieAffinity{Name: "S", Scope: scope}})
	}
	a, b, none := mk("HTTPRoute ns/r rule 0"), mk("HTTPRoute ns/r rule 1"), mk("")
	if a.values[0] == b.values[0] || a.values[0] == none.values[0] {
		t.Fatal("scopes share a value")
	}
	var h exchange.Header
	h.Add("Cookie", "S="+a.values[0])
	if b.pinned(&h, time.Now()) != -1 || none.pinned(&h, time.Now()) != -1 || a.pinned(&h, time.Now()) != 0 {
		t.Fatal("a scoped value routed outside its scope, or not in it")
	}
	if none.values[0] != cookieValue(key, "ns/app:80", "10.0.0.1:80", "") || !strings.HasPrefix(none.values[0], "MTAuMC4wLjE6ODA.") {
		t.Fatalf("unscoped value %q", none.values[0])
	}
}

// A Lifetime value routes until its expiry and never after, whatever the
// client keeps; it cannot be extended (the expiry is under the MAC); a
// running session is not set again, so the lifetime is absolute.
func TestAffinityLifetime(t *testing.T) {
	st := newAffinityState([]byte("k"), &routing.Backend{Name: "ns/app:80", Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"},
		Affinity: &routing.CookieAffinity{Name: "S", Lifetime: time.Minute}})
	t0 := time.Unix(1_800_000_000, 0)
	var out exchange.Header
	st.setCookie(&out, 1, -1, t0, false)
	sc := out.Value("Set-Cookie")
	if strings.Contains(sc, "Max-Age") || strings.Contains(sc, "Expires") {
		t.Fatalf("a session cookie with a lifetime got an expiry attribute: %q", sc)
	}
	val := strings.TrimPrefix(strings.Split(sc, ";")[0], "S=")
	at := func(v string, now time.Time) int {
		var h exchange.Header
		h.Add("Cookie", "S="+v)
		return st.pinned(&h, now)
	}
	if got := at(val, t0.Add(59*time.Second)); got != 1 {
		t.Fatalf("pinned %d within the lifetime", got)
	}
	if got := at(val, t0.Add(61*time.Second)); got != -1 {
		t.Fatalf("pinned %d after the lifetime", got)
	}
	parts := strings.Split(val, ".")
	later := parts[0] + "." + "zzzzzz" + "." + parts[2]
	if got := at(later, t0); got != -1 {
		t.Fatal("an extended expiry verified")
	}
	other := parts[0] + "." + parts[1] + "." + strings.Repeat("A", 22)
	if got := at(other, t0); got != -1 {
		t.Fatal("a forged MAC verified")
	}
	var again exchange.Header
	st.setCookie(&again, 1, 1, t0.Add(30*time.Second), false)
	if again.Len() != 0 {
		t.Fatal("a running session was set again (its lifetime would slide)")
	}
}

// A Header affinity names the endpoint in a response header the client
// echoes; cookies are not read for it. SecureOnTLS marks cookies set over
// TLS only.
func TestAffinityHeaderAndSecureOnTLS(t *testing.T) {
	hs := newAffinityState([]byte("k"), &routing.Backend{Name: "ns/app:80", Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"},
		Affinity: &routing.CookieAffinity{Name: "X-Session", Header: true}})
	var out exchange.Header
	hs.setCookie(&out, 1, -1, time.Now(), true)
	v := out.Value("X-Session")
	if v != hs.values[1] || out.Value("Set-Cookie") != "" {
		t.Fatalf("header %q, Set-Cookie %q", v, out.Value("Set-Cookie"))
	}
	var h exchange.Header
	h.Add("x-session", v)
	if hs.pinned(&h, time.Now()) != 1 {
		t.Fatal("the echoed header did not pin")
	}
	var c exchange.Header
	c.Add("Cookie", "X-Session="+v)
	if hs.pinned(&c, time.Now()) != -1 {
		t.Fatal("a header affinity read a cookie")
	}

	cs := newAffinityState([]byte("k"), &routing.Backend{Name: "ns/app:80", Endpoints: []string{"10.0.0.1:80"},
		Affinity: &routing.CookieAffinity{Name: "S", SameSite: "Lax", SecureOnTLS: true}})
	var plain, tls exchange.Header
	cs.setCookie(&plain, 0, -1, time.Now(), false)
	cs.setCookie(&tls, 0, -1, time.Now(), true)
	if strings.Contains(plain.Value("Set-Cookie"), "Secure") || !strings.HasSuffix(tls.Value("Set-Cookie"), "; SameSite=Lax; HttpOnly; Secure") {
		t.Fatalf("plain %q, TLS %q", plain.Value("Set-Cookie"), tls.Value("Set-Cookie"))
	}
}

// Through the proxy: a Gateway rule splitting 1:1 over two backends with
// session persistence keeps a session on its backend, also when that
// backend's weight drops to 0; a session cookie of one rule does not pin
// another rule's requests to the same backend; a request without a
// session is balanced by weight and gets a cookie.
func TestGatewaySessionPersistence(t *testing.T) {
	sa, sb := newBackend(t, "a"), newBackend(t, "b")
	aff := func(scope string) *routing.CookieAffinity {
		return &routing.CookieAffinity{Name: "gw-session", Scope: scope, Path: "/"}
	}
	mk := func(name, addr, scope string) *routing.Backend {
		b := be(name, addr)
		b.Affinity = aff(scope)
		return b
	}
	rule := func(path, scope string, wa, wb uint32) routing.Route {
		return gwRoute(path, nil,
			routing.WeightedBackend{Backend: mk("ns/a:80", addrOf(sa), scope), Weight: wa},
			routing.WeightedBackend{Backend: mk("ns/b:80", addrOf(sb), scope), Weight: wb})
	}
	var holder tables
	holder.Store(table(1, vhost("gw.test", rule("/one", "rule one", 1, 1), rule("/two", "rule two", 0, 1))))
	_, fe := newProxy(t, &holder, Config{AffinityKey: []byte("cluster key")})
	c := noRedirect()
	get := func(path, cookie string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", fe.URL+path, nil)
		req.Host = "gw.test"
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, e := doReq(t, c, req)
		return resp, e
	}
	// Without a cookie both backends are reached (1:1 by weight); every
	// answer sets a cookie. 64 tries miss one backend with chance 2^-63.
	cookies := map[string]string{}
	for i := 0; i < 64 && len(cookies) < 2; i++ {
		resp, who := get("/one", "")
		sc := resp.Header.Get("Set-Cookie")
		if !strings.HasPrefix(sc, "gw-session=") {
			t.Fatalf("no session cookie: %q", sc)
		}
		cookies[who] = strings.Split(sc, ";")[0]
	}
	if len(cookies) != 2 {
		t.Fatalf("reached %v only", cookies)
	}
	for who, ck := range cookies {
		for i := 0; i < 20; i++ {
			resp, got := get("/one", ck)
			if got != who || resp.Header.Get("Set-Cookie") != "" {
				t.Fatalf("cookie of %s: reached %s, Set-Cookie %q", who, got, resp.Header.Get("Set-Cookie"))
			}
		}
	}
	// Weight 0 for a: its sessions stay.
	holder.Store(table(2, vhost("gw.test", rule("/one", "rule one", 0, 1), rule("/two", "rule two", 0, 1))))
	if _, got := get("/one", cookies["a"]); got != "a" {
		t.Fatalf("a session on a weight-0 backend went to %s", got)
	}
	// Rule two's weights send everything to b; rule one's cookie for a
	// does not pin it there and is replaced.
	resp, got := get("/two", cookies["a"])
	if got != "b" || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "gw-session=") {
		t.Fatalf("rule one's session used by rule two: reached %s, Set-Cookie %q", got, resp.Header.Get("Set-Cookie"))
	}
}

// doReq sends req and returns the response and the echoing backend's name.
func doReq(t testing.TB, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("%s: status %d: %v", req.URL, resp.StatusCode, err)
	}
	return resp, e.Backend
}

// sessionFuzzTime is the clock of FuzzAffinitySession: its seed corpus
// holds a value issued at this time, still running then.
var sessionFuzzTime = time.Unix(1_800_000_000, 0)

func sessionFuzzState() *affinityState {
	return newAffinityState([]byte("cluster key"), &routing.Backend{Name: "ns/app:80", Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"},
		Affinity: &routing.CookieAffinity{Name: "S", Lifetime: time.Hour, Scope: "HTTPRoute ns/r rule 0"}})
}

// FuzzAffinitySession: whatever the Cookie field, the parser of Lifetime
// values returns -1 or the index of an endpoint the field names, without
// panicking on any split, base36 or base64 input.
func FuzzAffinitySession(f *testing.F) {
	st := sessionFuzzState()
	valid := st.value(1, sessionFuzzTime)
	for _, s := range []string{"", "S=" + valid, "a=b; S=" + valid + ";", "S=" + valid + "x", "S=..", "S=MTAuMC4wLjE6ODA.zzzzzzzzzzzzzz.AAAA", "S=MTAuMC4wLjE6ODA.-1." + strings.Repeat("A", 22)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cookie string) {
		var h exchange.Header
		h.Add("Cookie", cookie)
		i := st.pinned(&h, sessionFuzzTime)
		if i == -1 {
			return
		}
		if i < 0 || i >= len(st.eps) || !strings.Contains(cookie, "S="+base64URL(st.eps[i])+".") {
			t.Fatalf("%q pinned %d", cookie, i)
		}
	})
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
