//go:build !race

// Without the race detector, which makes sync.Pool drop items (see
// alloc_test.go).

package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
)

// Verifying a Lifetime value (a MAC per request) does not allocate.
func TestAffinityLifetimeAllocs(t *testing.T) {
	st := newAffinityState([]byte("k"), &routing.Backend{Name: "ns/app:80", Endpoints: []string{"10.0.0.1:80"},
		Affinity: &routing.CookieAffinity{Name: "S", Lifetime: time.Hour, Scope: "HTTPRoute ns/r rule 0"}})
	now := time.Now()
	var out exchange.Header
	st.setCookie(&out, 0, -1, now, false)
	var h exchange.Header
	h.Add("Cookie", "a=b; "+strings.Split(out.Value("Set-Cookie"), ";")[0])
	if st.pinned(&h, now) != 0 {
		t.Fatal("the value does not verify")
	}
	if n := testing.AllocsPerRun(100, func() { st.pinned(&h, now) }); n != 0 {
		t.Fatalf("%v allocations per Lifetime lookup", n)
	}
}
