package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
)

func affinityFixture() *affinityState {
	b := &routing.Backend{Name: "ns/app:80", Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80", "[2001:db8::1]:80"},
		Affinity: &routing.CookieAffinity{Name: "PIN", MaxAge: 90 * time.Second, Path: "/app", SameSite: "None"}}
	return newAffinityState([]byte("cluster key"), b)
}

// Cookie values verify only for the backend and key they were made for;
// the attributes follow the annotations; a pinned lookup does not
// allocate.
func TestAffinityCookies(t *testing.T) {
	st := affinityFixture()
	if st.attrs != "; Path=/app; Max-Age=90; SameSite=None; Secure; HttpOnly" {
		t.Fatalf("attributes %q", st.attrs)
	}
	var h exchange.Header
	h.Add("Cookie", "a=1; PIN="+st.values[2]+"; b=2")
	if got := st.pinned(&h, time.Now()); got != 2 {
		t.Fatalf("pinned %d, want 2", got)
	}
	if n := testing.AllocsPerRun(100, func() { st.pinned(&h, time.Now()) }); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
	other := newAffinityState([]byte("another cluster"), &routing.Backend{Name: "ns/app:80", Endpoints: []string{"10.0.0.1:80"},
		Affinity: &routing.CookieAffinity{Name: "PIN"}})
	otherBackend := newAffinityState([]byte("cluster key"), &routing.Backend{Name: "ns/other:80", Endpoints: []string{"10.0.0.1:80"},
		Affinity: &routing.CookieAffinity{Name: "PIN"}})
	for _, v := range []string{other.values[0], otherBackend.values[0], "", "garbage", st.values[0] + "x"} {
		var h exchange.Header
		h.Add("Cookie", "PIN="+v)
		if got := st.pinned(&h, time.Now()); got != -1 {
			t.Errorf("cookie %q pinned endpoint %d", v, got)
		}
	}
	var out exchange.Header
	st.setCookie(&out, 1, 1, time.Now(), false)
	if out.Len() != 0 {
		t.Fatal("a verified cookie was set again")
	}
	st.setCookie(&out, 1, -1, time.Now(), false)
	if v := out.Value("Set-Cookie"); v != "PIN="+st.values[1]+st.attrs {
		t.Fatalf("Set-Cookie %q", v)
	}
}

// FuzzAffinityCookie: whatever the Cookie field, pinned returns -1 or the
// index of an endpoint whose exact cookie value the field carries.
func FuzzAffinityCookie(f *testing.F) {
	st := affinityFixture()
	for _, s := range []string{"", "PIN=" + st.values[0], "a=b; PIN=" + st.values[1] + ";", "PIN", ";;;", "PIN=" + st.values[2] + "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cookie string) {
		var h exchange.Header
		h.Add("Cookie", cookie)
		i := st.pinned(&h, time.Now())
		if i == -1 {
			return
		}
		if i < 0 || i >= len(st.values) || !strings.Contains(cookie, "PIN="+st.values[i]) {
			t.Fatalf("%q pinned %d", cookie, i)
		}
	})
}
