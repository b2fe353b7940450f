package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

// learnManifest is an Ingress for /e2e/learn on harness.Host with sticky
// learn of the echo backends' JSESSIONID, to the Service learn (%[1]s: its
// EndpointSlices, stickySlice with the Service name replaced).
const learnManifest = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: learn
  namespace: default
  annotations:
    meshgate.io/affinity: learn
    meshgate.io/session-cookie-name: JSESSIONID
spec:
  ingressClassName: meshgate
  tls:
  - hosts: [%[2]q]
    secretName: echo-tls
  rules:
  - host: %[2]q
    http:
      paths:
      - path: /e2e/learn
        pathType: Prefix
        backend:
          service:
            name: learn
            port:
              name: http
---
apiVersion: v1
kind: Service
metadata:
  name: learn
  namespace: default
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
%[1]s`

// TestStickyLearnRoundRobin is issue 13's sticky-learn criterion, end to
// end: three replicas behind HAProxy's round robin, echo backends that
// issue their own JSESSIONID (set-session), curl keeping its cookies and
// opening a new connection per request (so the replicas share them).
//
// Why >= 99.9 % holds, and why it is not a statistical bound: nothing in
// the path is random once the backend has set the cookie. The replica
// that saw the Set-Cookie answers with the bridge cookie (Max-Age 60 s)
// naming the endpoint, so a replica the entry has not reached yet routes
// by it; once the entry is there (milliseconds) the zone routes it. A
// follow-up could only miss if the bridge expired before replication, or
// the entry were evicted (one entry against a 64 MiB budget), or the
// endpoint left. The test therefore allows one miss in 1,000 (the
// criterion) but expects none. After SIGKILL of a replica, requests
// HAProxy had already sent to it fail at the TCP level (counted, at most
// a few); every request that is answered must still reach the endpoint:
// the surviving replicas hold the entry.
func TestStickyLearnRoundRobin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var slices strings.Builder
	for i, ip := range []string{"127.0.0.37", "127.0.0.38", "127.0.0.39"} {
		e, err := harness.StartEcho(t, env.Bins, t.TempDir(), ip)
		if err != nil {
			t.Fatal(err)
		}
		h, p, _ := net.SplitHostPort(e.HTTPAddr)
		slice := strings.Replace(stickySlice, "kubernetes.io/service-name: sticky", "kubernetes.io/service-name: learn", 1)
		fmt.Fprintf(&slices, slice, fmt.Sprintf("learn-%d", i+1), p, h)
	}
	manifest := filepath.Join(env.Manifest, "learn.yaml")
	if err := os.WriteFile(manifest, fmt.Appendf(nil, learnManifest, slices.String(), harness.Host), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(manifest) })
	cluster, lb := balancedCluster(t, t.TempDir(), env.Manifest, "haproxy-learn", "127.0.0.36")

	jar := filepath.Join(t.TempDir(), "cookies")
	got, failed := learnRequests(t, ctx, lb.Addr, jar, 1001)
	if failed != 0 || len(got) != 1001 {
		t.Fatalf("%d replies, %d failed requests before any kill", len(got), failed)
	}
	owner := got[0].Backend.Addr
	if n := countOther(got[1:], owner); n > 1 {
		t.Fatalf("%d of 1000 follow-up requests left %s, the endpoint that set JSESSIONID (want >= 99.9 %% on it)", n, owner)
	} else {
		t.Logf("%d/1000 follow-ups on %s across 3 replicas", 1000-n, owner)
	}
	hits, bridged := 0.0, 0.0
	for _, r := range cluster.Replicas {
		hits += r.MustMetric(t, "meshgate_sticky_lookups_total", `result="hit"`)
		bridged += r.MustMetric(t, "meshgate_sticky_lookups_total", `result="bridge"`)
	}
	t.Logf("lookups: %v by the zone, %v by the bridge cookie", hits, bridged)
	if hits < 900 {
		t.Errorf("only %v of 1000 follow-ups were routed by the replicated zone", hits)
	}

	victim := cluster.Replicas[1]
	victim.Proc.Kill()
	after, failed := learnRequests(t, ctx, lb.Addr, jar, 500)
	if n := countOther(after, owner); n != 0 || failed > 5 || len(after) < 495 {
		t.Fatalf("after SIGKILL of %s: %d of %d replies left %s, %d requests failed", victim.Name, n, len(after), owner, failed)
	}
	t.Logf("after SIGKILL of %s: %d/%d replies on %s, %d requests failed at the connection", victim.Name, len(after), len(after), owner, failed)

	t.Run("without the bridge cookie", func(t *testing.T) {
		bridgeless(t, ctx, lb.Addr, cluster)
	})
}

// bridgeless measures the replication window's cost for a client that
// drops cookies it does not know (here MESHGATE_LEARN): 200 new sessions,
// each followed at once by a second request on a new connection (HAProxy
// sends it to the next replica). A second request that reaches another
// endpoint than the first costs the client its session (the backend issues
// a new one). Then, once every replica holds the sessions (zone records),
// 200 further requests of one session all stay. The window's cost is
// reported, not bounded: it depends on the replication delay against the
// client's think time, which here is zero.
func bridgeless(t *testing.T, ctx context.Context, lbAddr string, cluster *harness.Cluster) {
	tcfg, err := env.PKI.ClientConfig(tls.VersionTLS13)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: tcfg, DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, lbAddr)
		}}
	defer tr.CloseIdleConnections()
	u := harness.URL(lbAddr, "/e2e/learn/x?set-session=JSESSIONID")
	changed, total := 0, 200
	var last *http.Client
	for range total {
		inner, _ := cookiejar.New(nil)
		c := &http.Client{Transport: tr, Jar: dropJar{inner}, Timeout: 10 * time.Second}
		first := learnGet(t, ctx, c, u)
		if learnGet(t, ctx, c, u) != first {
			changed++
		}
		last = c
	}
	t.Logf("without the bridge cookie, zero think time: %d of %d sessions lost their endpoint on the second request (%.1f %%)",
		changed, total, 100*float64(changed)/float64(total))
	for _, r := range cluster.Replicas {
		if !r.Ready() {
			continue
		}
		testkit.WaitFor(t, 10*time.Second, r.Name+" holds the sessions", func() bool {
			return r.MustMetric(t, "meshgate_sessionmesh_zone_records", `zone="sticky"`) >= float64(total)
		})
	}
	owner := learnGet(t, ctx, last, u)
	for i := range 200 {
		if got := learnGet(t, ctx, last, u); got != owner {
			t.Fatalf("after replication, request %d reached %s, the session is on %s", i, got, owner)
		}
	}
}

// dropJar is a cookie jar that drops the bridge cookie, as a client that
// keeps only cookies it knows would.
type dropJar struct{ http.CookieJar }

func (j dropJar) SetCookies(u *url.URL, cs []*http.Cookie) {
	var keep []*http.Cookie
	for _, c := range cs {
		if c.Name != "MESHGATE_LEARN" {
			keep = append(keep, c)
		}
	}
	j.CookieJar.SetCookies(u, keep)
}

func learnGet(t *testing.T, ctx context.Context, c *http.Client, u string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r stickyReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	return r.Backend.Addr
}

// learnRequests runs n GETs of /e2e/learn through HAProxy at addr, each
// on a new connection, with curl's cookie engine on jar and the echo
// backends asked to issue JSESSIONID (curlEchoRuns).
func learnRequests(t *testing.T, ctx context.Context, addr, jar string, n int) ([]stickyReply, int) {
	t.Helper()
	return curlEchoRuns(t, ctx, addr, "/e2e/learn", "set-session=JSESSIONID", jar, n)
}
