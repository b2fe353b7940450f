package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

// limitManifest limits /e2e/limit (by client address) and /e2e/burst (by
// the X-Client field) on harness.Host to %[2]d requests a second each,
// burst multiplier 1 (one second's worth at most at any time), routed to
// the scenario's Service echo.
const limitManifest = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: limited
  namespace: default
  annotations:
    meshgate.io/limit-rps: "%[2]d"
    meshgate.io/limit-burst-multiplier: "1"
spec:
  ingressClassName: meshgate
  tls:
  - hosts: [%[1]q]
    secretName: echo-tls
  rules:
  - host: %[1]q
    http:
      paths:
      - path: /e2e/limit
        pathType: Prefix
        backend:
          service: {name: echo, port: {name: http}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: burst
  namespace: default
  annotations:
    meshgate.io/limit-rps: "%[2]d"
    meshgate.io/limit-burst-multiplier: "1"
    meshgate.io/limit-key: header:X-Client
spec:
  ingressClassName: meshgate
  rules:
  - host: %[1]q
    http:
      paths:
      - path: /e2e/burst
        pathType: Prefix
        backend:
          service: {name: echo, port: {name: http}}
`

// The load: limitWorkers keep-alive connections (each its own transport,
// so HAProxy's round robin spreads them 8/8/8 over three servers), each
// sending on a fixed schedule, limitWorkers/limitInterval = 1,000 rps.
const (
	limitRate     = 300
	limitWorkers  = 24
	limitInterval = 24 * time.Millisecond
	limitSeconds  = 6 // aligned seconds of steady load per side
)

// sent is one request of the load: when it left and its status (0: error).
type sent struct {
	at   time.Time
	code int
}

// paced sends limitWorkers × (d / limitInterval) requests of path to lb
// with hdr, each worker on its own connection and schedule (a late worker
// sends at once, so the offered rate holds while the machine keeps up).
func paced(t *testing.T, lb, path string, d time.Duration, hdr http.Header) []sent {
	t.Helper()
	base, err := env.PKI.ClientConfig(tls.VersionTLS13)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out []sent
	var wg sync.WaitGroup
	start := time.Now()
	for w := range limitWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: base.Clone(), MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1,
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, lb)
				}}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			mine := make([]sent, 0, int(d/limitInterval)+1)
			// Workers start spread over one interval.
			next := start.Add(time.Duration(w) * limitInterval / limitWorkers)
			for end := start.Add(d); next.Before(end); next = next.Add(limitInterval) {
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait) // pacing the load, not an assertion
				}
				req, _ := http.NewRequest("GET", harness.URL(lb, path), nil)
				req.Header = hdr.Clone()
				s := sent{at: time.Now()}
				if resp, err := c.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					s.code = resp.StatusCode
				}
				mine = append(mine, s)
			}
			mu.Lock()
			out = append(out, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// perSecond counts, per aligned wall-clock second (the limiter's windows),
// the requests sent and those admitted (200).
func perSecond(rs []sent) (secs []int64, offered, admitted map[int64]int) {
	offered, admitted = map[int64]int{}, map[int64]int{}
	for _, r := range rs {
		s := r.at.Unix()
		offered[s]++
		if r.code == 200 {
			admitted[s]++
		}
	}
	for s := range offered {
		secs = append(secs, s)
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i] < secs[j] })
	return secs, offered, admitted
}

// TestClusterRateLimitRoundRobin is issue 13's limit criterion, end to
// end: one client at a steady ~1,000 rps through HAProxy's round robin
// against meshgate.io/limit-rps 300 on three replicas is admitted 300 a
// second ± 10 %; three nginx with the same rate in limit_req
// (rate=300r/s burst=30 nodelay) behind the same kind of balancer, same
// run, admit about 900. The burst there is a tenth of a second's worth so
// that arrival jitter on a busy machine does not make nginx reject under
// its rate; ingress-nginx would render burst=300 for multiplier 1, which
// only postpones the same steady state: each nginx's excess of ~33 rps
// takes 9 s to fill a bucket of 300. Then a burst on an idle key stops on every replica within
// 200 ms of the cluster reaching the rate.
//
// Why the bounds hold. Each replica admits while its own counts plus its
// peers' last reports stay under the rate, on one-second windows aligned
// on the wall clock (one clock here: one machine). Reports leave every
// 25 ms; what a replica does not yet know of its peers is at most one
// interval plus the delivery delay d, and the previous window's final
// counts arrive as late, so the cluster over-admits at most
// 2 × (N−1)/N × rate × (25 ms + d) / 1 s per window: 10 requests (3.3 %)
// with d ≈ 0 (the package test measures 310), and the 10 % tolerance
// (30) holds while d ≤ 50 ms, which a busy 2-core VM's scheduling
// delays stay under. It cannot under-admit by more than the client
// under-offers: counts are absolute and merged by maximum, so an estimate
// never exceeds the true count, and the sliding term assumes the previous
// window's admissions were even, which a steady load makes them. The
// first aligned second is left out: the partial second before it was
// admitted in a burst, which the sliding term then over-weights early on.
// A burst converges within one interval plus d (the time for the last
// admissions to be reported): 200 ms leaves d up to 175 ms.
func TestClusterRateLimitRoundRobin(t *testing.T) {
	manifest := filepath.Join(env.Manifest, "limited.yaml")
	gens := make([]float64, len(env.Cluster.Replicas))
	for i, r := range env.Cluster.Replicas {
		gens[i] = r.MustMetric(t, "meshgate_dataplane_table_generation", "")
	}
	if err := os.WriteFile(manifest, fmt.Appendf(nil, limitManifest, harness.Host, limitRate), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(manifest) })
	for i, r := range env.Cluster.Replicas {
		testkit.WaitFor(t, 10*time.Second, r.Name+" serves the limited manifest", func() bool {
			return r.MustMetric(t, "meshgate_dataplane_table_generation", "") > gens[i]
		})
	}

	ngs, err := harness.StartNginxSet(t, harness.NginxConfig{Dir: t.TempDir(), Name: "nginx-limit", PKI: env.PKI,
		Upstream: env.Echo.HTTPAddr, Workers: 1, LimitReq: &harness.NginxLimitReq{RPS: limitRate, Burst: limitRate / 10}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	nginxLB, err := harness.StartHAProxy(t, t.TempDir(), "haproxy-nginx-limit", "127.0.0.51", harness.NginxAddrs(ngs), true)
	if err != nil {
		t.Fatal(err)
	}

	// Start on a window boundary + 500 ms, run limitSeconds + 1 seconds.
	d := time.Duration(limitSeconds+1) * time.Second
	waitAligned(500 * time.Millisecond)
	mesh := paced(t, env.MeshLB.Addr, "/e2e/limit", d, http.Header{})
	waitAligned(500 * time.Millisecond)
	ngx := paced(t, nginxLB.Addr, "/e2e/limit", d, http.Header{})

	check := func(name string, rs []sent, lo, hi int) {
		secs, offered, admitted := perSecond(rs)
		// secs[0] is the partial first second, secs[1] the first full one
		// (left out, see above); the last is partial too.
		full := secs[2 : len(secs)-1]
		total := 0
		for _, s := range secs {
			t.Logf("%s: second %d: offered %d, admitted %d", name, s%100, offered[s], admitted[s])
		}
		for _, s := range full {
			total += admitted[s]
			if offered[s] < 900 {
				t.Errorf("%s: the client offered only %d requests in second %d (want ~1,000): the machine did not keep up", name, offered[s], s%100)
			}
			if a := admitted[s]; a < lo || a > hi {
				t.Errorf("%s: second %d admitted %d, want %d..%d", name, s%100, a, lo, hi)
			}
		}
		fmt.Printf("rate limit %d rps, ~1,000 rps offered, 3 replicas behind round robin: %s admitted %.1f per second (mean of %d full seconds)\n",
			limitRate, name, float64(total)/float64(len(full)), len(full))
	}
	check("meshgate", mesh, limitRate*9/10, limitRate*11/10)
	// nginx: each of the three enforces the rate alone on its ~333 rps.
	check("nginx", ngx, 3*limitRate*9/10, 3*limitRate*11/10)

	t.Run("burst converges", func(t *testing.T) { burstConverges(t) })
}

// burstConverges sends ~1,000 rps for 700 ms on a fresh key from the start
// of a window: the cluster admits the rate (plus the bounded overshoot),
// and the last admission comes within 200 ms of the admission that
// reached the rate (sorted by send time).
func burstConverges(t *testing.T) {
	waitAligned(50 * time.Millisecond)
	hdr := http.Header{"X-Client": {fmt.Sprint("burst-", time.Now().UnixNano())}}
	rs := paced(t, env.MeshLB.Addr, "/e2e/burst", 700*time.Millisecond, hdr)
	sort.Slice(rs, func(i, j int) bool { return rs[i].at.Before(rs[j].at) })
	var ok []time.Time
	for _, r := range rs {
		if r.code == 200 {
			ok = append(ok, r.at)
		}
	}
	if len(ok) < limitRate {
		t.Fatalf("burst: %d of %d admitted, want at least the rate %d", len(ok), len(rs), limitRate)
	}
	conv := ok[len(ok)-1].Sub(ok[limitRate-1])
	fmt.Printf("burst on an idle key, %d requests in 700 ms: %d admitted (rate %d), last admission %v after the cluster reached the rate\n",
		len(rs), len(ok), limitRate, conv.Round(time.Millisecond))
	if len(ok) > limitRate*11/10 {
		t.Errorf("burst admitted %d, want at most %d", len(ok), limitRate*11/10)
	}
	if conv > 200*time.Millisecond {
		t.Errorf("burst converged in %v, want within 200ms", conv)
	}
}

// waitAligned returns at the next wall-clock second plus off.
func waitAligned(off time.Duration) {
	now := time.Now()
	next := now.Truncate(time.Second).Add(time.Second + off)
	time.Sleep(time.Until(next)) // aligning the load on the limiter's windows, not an assertion
}
