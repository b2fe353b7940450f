package security

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

// fixedCache offers one session for every server name and keeps nothing
// the server sends. Safe for concurrent use (read-only after creation,
// or a fresh forged session per Get when forge is set).
type fixedCache struct {
	s     *tls.ClientSessionState
	forge func() *tls.ClientSessionState
}

func (c *fixedCache) Get(string) (*tls.ClientSessionState, bool) {
	if c.forge != nil {
		return c.forge(), true
	}
	return c.s, c.s != nil
}
func (*fixedCache) Put(string, *tls.ClientSessionState) {}

// realSession does one full handshake for host against addr and returns
// the session the server issued.
func (e *env) realSession(t *testing.T, addr, host string, version uint16) *tls.ClientSessionState {
	t.Helper()
	cfg := e.clientConfig(t, host)
	cfg.MinVersion, cfg.MaxVersion = version, version
	cache := tls.NewLRUClientSessionCache(4)
	cfg.ClientSessionCache = cache
	c := &harness.Client{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Do(ctx, addr); err != nil {
		t.Fatal(err)
	}
	s, ok := cache.Get(host)
	if !ok {
		t.Fatalf("no session issued for %s (TLS %x)", host, version)
	}
	return s
}

// offer connects to addr for host offering s, and reports whether it
// resumed. Any error fails the test: a refused session must fall back to
// a full handshake, never to an error.
func (e *env) offer(t *testing.T, addr, host string, version uint16, cache tls.ClientSessionCache) bool {
	t.Helper()
	cfg := e.clientConfig(t, host)
	cfg.MinVersion, cfg.MaxVersion = version, version
	cfg.ClientSessionCache = cache
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resumed, err := (&harness.Client{Config: cfg}).Do(ctx, addr)
	if err != nil {
		t.Errorf("TLS %x %s via %s: %v", version, host, addr, err)
	}
	return resumed
}

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// TestForgedSessionFlood offers 400 forged session ids / tickets per TLS
// version (random bytes of several sizes, and a real ticket with one bit
// flipped): every connection completes a full handshake without error and
// each offer is counted in resumption_misses_total.
func TestForgedSessionFlood(t *testing.T) {
	e := setup(t)
	r := e.cluster.Replicas[0]
	const n = 400
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			real := e.realSession(t, r.HTTPSAddr, harness.Host, ver.v)
			ticket, state, err := real.ResumptionState()
			if err != nil || state == nil {
				t.Fatalf("resumption state: %v", err)
			}
			// NewResumptionState writes into the SessionState it is given,
			// so every forged session gets its own copy.
			stateBytes, err := state.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			var i atomic.Int64
			forge := func() *tls.ClientSessionState {
				k := i.Add(1)
				var b []byte
				switch k % 4 {
				case 0: // one bit of a real ticket flipped
					b = append([]byte(nil), ticket...)
					b[int(k)%len(b)] ^= 1 << (k % 8)
				case 1:
					b = randBytes(len(ticket))
				case 2:
					b = randBytes(32)
				default:
					b = randBytes(1 + int(k%200))
				}
				st, err := tls.ParseSessionState(stateBytes)
				if err != nil {
					panic(fmt.Sprintf("ParseSessionState: %v", err))
				}
				s, err := tls.NewResumptionState(b, st)
				if err != nil {
					panic(fmt.Sprintf("NewResumptionState: %v", err))
				}
				return s
			}
			cache := &fixedCache{forge: forge}
			miss0 := r.MustMetric(t, "meshgate_sessionmesh_resumption_misses_total", "")
			full0 := r.MustMetric(t, "meshgate_sessionmesh_handshakes_total", `kind="full"`)
			var resumed atomic.Int64
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Go(func() {
					for j := 0; j < n/4; j++ {
						if e.offer(t, r.HTTPSAddr, harness.Host, ver.v, cache) {
							resumed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			misses := r.MustMetric(t, "meshgate_sessionmesh_resumption_misses_total", "") - miss0
			full := r.MustMetric(t, "meshgate_sessionmesh_handshakes_total", `kind="full"`) - full0
			t.Logf("%d forged offers: %d resumed, misses +%.0f, full handshakes +%.0f", n, resumed.Load(), misses, full)
			if resumed.Load() != 0 {
				t.Errorf("%d forged sessions resumed", resumed.Load())
			}
			if misses < n {
				t.Errorf("misses grew by %.0f, want >= %d", misses, n)
			}
			if full < n {
				t.Errorf("full handshakes grew by %.0f, want >= %d", full, n)
			}
		})
	}
	e.mustServe(t, r)
}

// TestNoCrossHostResumption offers a session issued for Host to OtherHost
// (same certificate, same backend) on the issuing replica and on another
// replica: both must do a full handshake, while the same session offered
// for Host on the other replica resumes (the control).
func TestNoCrossHostResumption(t *testing.T) {
	e := setup(t)
	r1, r2 := e.cluster.Replicas[0], e.cluster.Replicas[1]
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			s := e.realSession(t, r1.HTTPSAddr, harness.Host, ver.v)
			cache := &fixedCache{s: s}
			// The control first: once the session resumes for Host on r2,
			// r2 holds its record, so the refusals below are the binding's
			// and not a replication delay's.
			testkit.WaitFor(t, 10*time.Second, "control: session for "+harness.Host+" resumes on "+r2.Name, func() bool {
				return e.offer(t, r2.HTTPSAddr, harness.Host, ver.v, cache)
			})
			bind0 := r1.MustMetric(t, "meshgate_sessionmesh_resumption_misses_total", "") +
				r2.MustMetric(t, "meshgate_sessionmesh_resumption_misses_total", "")
			for _, r := range []*harness.Replica{r1, r2} {
				if e.offer(t, r.HTTPSAddr, harness.OtherHost, ver.v, cache) {
					t.Errorf("%s: session for %s resumed for %s", r.Name, harness.Host, harness.OtherHost)
				}
			}
			bind := r1.MustMetric(t, "meshgate_sessionmesh_resumption_misses_total", "") +
				r2.MustMetric(t, "meshgate_sessionmesh_resumption_misses_total", "") - bind0
			t.Logf("cross-host offers refused, misses +%.0f", bind)
			if bind < 2 {
				t.Errorf("cross-host offers counted as %.0f misses, want 2", bind)
			}
		})
	}
}
