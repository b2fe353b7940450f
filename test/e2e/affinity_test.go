package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

// affinityManifest is an Ingress for /e2e/sticky on harness.Host with
// cookie affinity, to the Service sticky whose endpoints are one
// EndpointSlice each (%[1]s: the slices).
const affinityManifest = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: sticky
  namespace: default
  annotations:
    meshgate.io/affinity: cookie
    meshgate.io/session-cookie-name: E2EPIN
    meshgate.io/session-cookie-max-age: "3600"
spec:
  ingressClassName: meshgate
  tls:
  - hosts: [%[2]q]
    secretName: echo-tls
  rules:
  - host: %[2]q
    http:
      paths:
      - path: /e2e/sticky
        pathType: Prefix
        backend:
          service:
            name: sticky
            port:
              name: http
---
apiVersion: v1
kind: Service
metadata:
  name: sticky
  namespace: default
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
%[1]s`

// stickySlice is one EndpointSlice of Service sticky: name, port, address.
const stickySlice = `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s
  namespace: default
  labels:
    kubernetes.io/service-name: sticky
addressType: IPv4
ports:
- name: http
  port: %s
  protocol: TCP
endpoints:
- addresses: [%q]
  conditions:
    ready: true
`

// TestCookieAffinityRoundRobin is issue 13's first criterion, end to end:
// curl, keeping its cookies, sends 1,000 requests through HAProxy's round
// robin, each on a new connection (so the three replicas share them); all
// reach the endpoint the first response pinned, whichever replica serves
// them. Then that endpoint leaves the Service: the next request is
// re-pinned to another endpoint and 200 more stay there.
func TestCookieAffinityRoundRobin(t *testing.T) {
	backends := map[string]string{} // endpoint address -> slice name
	var order []string
	for i, ip := range []string{"127.0.0.31", "127.0.0.32", "127.0.0.33"} {
		e, err := harness.StartEcho(t, env.Bins, t.TempDir(), ip)
		if err != nil {
			t.Fatal(err)
		}
		backends[e.HTTPAddr] = fmt.Sprintf("sticky-%d", i+1)
		order = append(order, e.HTTPAddr)
	}
	manifest := filepath.Join(env.Manifest, "sticky.yaml")
	publish := func(eps []string) {
		t.Helper()
		var slices strings.Builder
		for _, ep := range eps {
			h, p, _ := net.SplitHostPort(ep)
			fmt.Fprintf(&slices, stickySlice, backends[ep], p, h)
		}
		gens := make([]float64, len(env.Cluster.Replicas))
		for i, r := range env.Cluster.Replicas {
			gens[i] = r.MustMetric(t, "meshgate_dataplane_table_generation", "")
		}
		if err := os.WriteFile(manifest, fmt.Appendf(nil, affinityManifest, slices.String(), harness.Host), 0o644); err != nil {
			t.Fatal(err)
		}
		for i, r := range env.Cluster.Replicas {
			testkit.WaitFor(t, 10*time.Second, r.Name+" serves the new sticky manifest", func() bool {
				return r.MustMetric(t, "meshgate_dataplane_table_generation", "") > gens[i]
			})
		}
	}
	t.Cleanup(func() { os.Remove(manifest) })
	publish(order)

	jar := filepath.Join(t.TempDir(), "cookies")
	served0 := servedPerReplica(t)
	got := stickyRequests(t, jar, 1000)
	pinned := got[0].Backend.Addr
	if n := countOther(got, pinned); n != 0 {
		t.Fatalf("%d of 1000 requests with the cookie reached another endpoint than %s", n, pinned)
	}
	// Every replica took part: HAProxy's round robin over new connections
	// gives each about a third; a third of a third is a loose floor that
	// still fails if one replica served none.
	served := servedPerReplica(t)
	for i, r := range env.Cluster.Replicas {
		if d := served[i] - served0[i]; d < 1000/9 {
			t.Errorf("%s served %v of the 1000 requests: the round robin did not spread them", r.Name, d)
		}
	}
	t.Logf("1000/1000 requests pinned to %s across %d replicas (served %v → %v)", pinned, len(env.Cluster.Replicas), served0, served)

	var rest []string
	for _, ep := range order {
		if ep != pinned {
			rest = append(rest, ep)
		}
	}
	publish(rest)
	after := stickyRequests(t, jar, 200)
	repinned := after[0].Backend.Addr
	if repinned == pinned {
		t.Fatalf("the first request after %s left still reached it", pinned)
	}
	if n := countOther(after, repinned); n != 0 {
		t.Fatalf("after the re-pin to %s, %d of 200 requests reached another endpoint", repinned, n)
	}
	t.Logf("after %s left: re-pinned to %s, 200/200 stayed", pinned, repinned)
}

// stickyReply is the part of the echo backend's answer the test reads.
type stickyReply struct {
	Backend struct {
		Addr string `json:"addr"`
	} `json:"backend"`
}

// stickyRequests runs one curl for n GETs of /e2e/sticky through HAProxy
// with curl's cookie engine reading and writing jar (curlEcho).
func stickyRequests(t *testing.T, jar string, n int) []stickyReply {
	t.Helper()
	return curlEcho(t, env.MeshLB.Addr, "/e2e/sticky", jar, n)
}

// curlEcho runs one curl for n GETs of path/1 … path/n through the
// balancer at addr (curlEchoRuns) and fails the test unless every one was
// answered; it returns the echo replies in order.
func curlEcho(t *testing.T, addr, path, jar string, n int) []stickyReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	replies, failed := curlEchoRuns(t, ctx, addr, path, "", jar, n)
	if failed != 0 {
		t.Fatalf("%d of %d requests failed", failed, n)
	}
	return replies
}

// curlEchoRuns runs one curl for n GETs of path/1 … path/n (with query, if
// not "") through the balancer at addr, each on a new HTTP/1.1 connection
// (Connection: close; over HTTP/2 curl would multiplex them on one), with
// curl's cookie engine reading and writing jar ("" for no cookies). It
// returns the echo replies in order and how many requests failed: curl
// goes on after a failed transfer, and its exit status is only the last
// one's, so failures are counted from its messages.
func curlEchoRuns(t *testing.T, ctx context.Context, addr, path, query, jar string, n int) ([]stickyReply, int) {
	t.Helper()
	args := []string{"-sS", "--fail", "--max-time", "10", "--cacert", env.PKI.CACert,
		"--resolve", harness.ResolveArg(addr), "--http1.1", "-H", "Connection: close"}
	if jar != "" {
		args = append(args, "-b", jar, "-c", jar)
	}
	u := fmt.Sprintf("%s/[1-%d]", path, n)
	if query != "" {
		u += "?" + query
	}
	args = append(args, harness.URL(addr, u))
	cmd := exec.CommandContext(ctx, "curl", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.Output() // failures are counted below
	var replies []stickyReply
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var r stickyReply
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("reply %d: %v", len(replies)+1, err)
		}
		replies = append(replies, r)
	}
	failed := strings.Count(stderr.String(), "curl: (")
	if len(replies)+failed != n {
		t.Fatalf("%d replies and %d failures for %d requests: %s", len(replies), failed, n, stderr.String())
	}
	return replies, failed
}

func countOther(rs []stickyReply, addr string) int {
	n := 0
	for _, r := range rs {
		if r.Backend.Addr != addr {
			n++
		}
	}
	return n
}

// servedPerReplica is each replica's count of requests proxied to the
// sticky Service.
func servedPerReplica(t *testing.T) []float64 {
	t.Helper()
	out := make([]float64, len(env.Cluster.Replicas))
	for i, r := range env.Cluster.Replicas {
		out[i] = r.MustMetric(t, "meshgate_http_requests_total", "sticky")
	}
	return out
}
