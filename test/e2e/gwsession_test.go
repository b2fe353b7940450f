package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// gwSessionManifest is a Gateway HTTPS listener for harness.Host and an
// HTTPRoute whose one rule splits /e2e/gw-session 1:1 over Services gwsa
// (two endpoints) and gwsb (one) with cookie session persistence: a
// permanent cookie GWPIN, absolute timeout 1h. %[1]s host, %[2]s the
// Services' EndpointSlices.
const gwSessionManifest = gatewayHTTPS + `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw-session, namespace: default}
spec:
  parentRefs: [{name: web, sectionName: https}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /e2e/gw-session}}]
    backendRefs: [{name: gwsa, port: 80, weight: 1}, {name: gwsb, port: 80, weight: 1}]
    sessionPersistence:
      sessionName: GWPIN
      absoluteTimeout: 1h
      cookieConfig: {lifetimeType: Permanent}
---
apiVersion: v1
kind: Service
metadata: {name: gwsa, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: gwsb, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: http}]
%[2]s`

// gwSessionSlice is one EndpointSlice: name, Service, port, address.
const gwSessionSlice = `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s
  namespace: default
  labels: {kubernetes.io/service-name: %s}
addressType: IPv4
ports: [{name: http, port: %s}]
endpoints: [{addresses: [%q], conditions: {ready: true}}]
`

// TestGatewaySessionPersistenceRoundRobin is issue 13's cookie criterion
// for Gateway API session persistence: three replicas (standalone, reading
// the HTTPRoute's sessionPersistence from manifests) behind HAProxy's round
// robin. Without a cookie, requests spread over the endpoints of both
// weighted Services; with curl keeping its cookies, 1,000 requests on new
// connections reach the one endpoint the first response pinned, whichever
// replica serves them, and the cookie is a permanent one with the
// configured hour as its Max-Age.
func TestGatewaySessionPersistenceRoundRobin(t *testing.T) {
	var slices strings.Builder
	for i, ip := range []string{"127.0.0.41", "127.0.0.42", "127.0.0.43"} {
		e, err := harness.StartEcho(t, env.Bins, t.TempDir(), ip)
		if err != nil {
			t.Fatal(err)
		}
		h, p, _ := net.SplitHostPort(e.HTTPAddr)
		svc := "gwsa"
		if i == 2 {
			svc = "gwsb"
		}
		fmt.Fprintf(&slices, gwSessionSlice, fmt.Sprintf("%s-%d", svc, i), svc, p, h)
	}
	dir := t.TempDir()
	mdir := gatewayManifests(t, dir, fmt.Appendf(nil, gwSessionManifest, harness.Host, slices.String()))
	cluster, lb := balancedCluster(t, dir, mdir, "haproxy-gw-session", "127.0.0.62", "--gateway-https-port=443")

	// Without cookies: 60 requests reach at least two endpoints. Each picks
	// a Service 1:1 at random, so all 60 on one Service has chance 2^-59.
	free := curlEcho(t, lb.Addr, "/e2e/gw-session", "", 60)
	seen := map[string]bool{}
	for _, r := range free {
		seen[r.Backend.Addr] = true
	}
	if len(seen) < 2 {
		t.Fatalf("60 requests without a cookie all reached %v", seen)
	}

	jar := filepath.Join(t.TempDir(), "cookies")
	served0 := gwSessionServed(t, cluster)
	got := curlEcho(t, lb.Addr, "/e2e/gw-session", jar, 1000)
	pinned := got[0].Backend.Addr
	if n := countOther(got, pinned); n != 0 {
		t.Fatalf("%d of 1000 requests with the session cookie reached another endpoint than %s", n, pinned)
	}
	served := gwSessionServed(t, cluster)
	for i, r := range cluster.Replicas {
		// a third of a third of the requests: fails if a replica served none
		if d := served[i] - served0[i]; d < 1000/9 {
			t.Errorf("%s served %v of the 1000 requests: the round robin did not spread them", r.Name, d)
		}
	}
	// The jar (Netscape format: domain, subdomains, path, secure, expiry,
	// name, value) holds GWPIN, Secure (set over TLS), path /e2e/gw-session,
	// expiring about an hour after it was set.
	line := jarLine(t, jar, "GWPIN")
	f := strings.Split(line, "\t")
	exp, _ := strconv.ParseInt(f[4], 10, 64)
	if left := time.Until(time.Unix(exp, 0)); f[2] != "/e2e/gw-session" || f[3] != "TRUE" || left < 50*time.Minute || left > time.Hour+time.Minute {
		t.Fatalf("cookie %q (expires in %v)", line, left)
	}
	t.Logf("1000/1000 requests pinned to %s across 3 replicas (served %v → %v); cookie path %s, expires in %v", pinned, served0, served, f[2], time.Until(time.Unix(exp, 0)).Round(time.Second))
}

// gwSessionServed is each replica's count of requests proxied to the two
// Services.
func gwSessionServed(t *testing.T, c *harness.Cluster) []float64 {
	t.Helper()
	out := make([]float64, len(c.Replicas))
	for i, r := range c.Replicas {
		out[i] = r.MustMetric(t, "meshgate_http_requests_total", "default/gwsa") + r.MustMetric(t, "meshgate_http_requests_total", "default/gwsb")
	}
	return out
}

// jarLine is the line of curl's cookie jar for cookie name.
func jarLine(t *testing.T, jar, name string) string {
	t.Helper()
	f, err := os.Open(jar)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimPrefix(sc.Text(), "#HttpOnly_")
		if fs := strings.Split(l, "\t"); len(fs) == 7 && fs[5] == name {
			return l
		}
	}
	t.Fatalf("no cookie %s in the jar", name)
	return ""
}
