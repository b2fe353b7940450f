// Package browser loads a page with 30 subresources in a real headless
// Chromium, through HAProxy (TCP, round robin, PROXY v2) to three meshgate
// replicas sharing sessions over the mesh, and through the same kind of
// HAProxy to three nginx servers, and compares how many of the second
// visit's TLS connections resume.
//
// Method: the page is visited twice in one browser (one in-memory TLS
// session cache). Between the visits every TCP connection is closed by
// HAProxy's 1 s idle timeouts (this package's own HAProxy config), so the
// second visit opens new connections, which round robin spreads over the
// replicas, and each offers a session Chromium cached during the first
// visit. The HTTP cache is disabled through DevTools so the second visit
// fetches all 31 resources again. meshgate's resumptions are read from each
// replica's meshgate_sessionmesh_handshakes_total; nginx's from an access
// log with $ssl_session_reused per connection.
package browser

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

const subresources = 30

// startPageServer serves / (an HTML page with 30 images) and /img/N.svg
// on ip, uncacheable. t's cleanup closes it.
func startPageServer(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if strings.HasPrefix(r.URL.Path, "/img/") {
			w.Header().Set("Content-Type", "image/svg+xml")
			fmt.Fprint(w, `<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="teal"/></svg>`)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		var b strings.Builder
		b.WriteString("<!doctype html><title>meshgate</title><h1>30 subresources</h1>\n")
		for i := 0; i < subresources; i++ {
			fmt.Fprintf(&b, "<img src=\"/img/%d.svg\">\n", i)
		}
		fmt.Fprint(w, b.String())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) // owned: ends when cleanup closes the server
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// nginxConns counts distinct connections and resumed ones in the logs,
// skipping the first skip[i] lines of log i; it returns the line counts.
func nginxConns(t *testing.T, logs []string, skip []int) (conns, resumed int, lines []int) {
	t.Helper()
	for i, p := range logs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		n := 0
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			n++
			if skip != nil && n <= skip[i] {
				continue
			}
			fs := strings.Fields(sc.Text())
			if len(fs) != 2 || seen[fs[0]] {
				continue
			}
			seen[fs[0]] = true
			conns++
			if fs[1] == "r" {
				resumed++
			}
		}
		f.Close()
		lines = append(lines, n)
	}
	return conns, resumed, lines
}

// handshakes sums meshgate's full and resumed handshakes, and offered
// sessions that did not resume (misses), over replicas.
func handshakes(t *testing.T, rs []*harness.Replica) (full, resumed, misses float64) {
	t.Helper()
	for _, r := range rs {
		body, err := r.Get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		full += harness.SumMetric(body, "meshgate_sessionmesh_handshakes_total", `kind="full"`)
		resumed += harness.SumMetric(body, "meshgate_sessionmesh_handshakes_total", `kind="resumed"`)
		misses += harness.SumMetric(body, "meshgate_sessionmesh_resumption_misses_total", "")
	}
	return full, resumed, misses
}

// twoVisits loads url twice in a fresh browser, letting HAProxy close
// every connection in between, and calls between() before the second
// visit (to snapshot counters). It checks every image loaded each time.
func twoVisits(t *testing.T, chromium, lbAddr string, between func()) {
	t.Helper()
	host, _, _ := net.SplitHostPort(lbAddr)
	b := startBrowser(t, chromium, harness.Host, host)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	page, err := b.newPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	url := harness.URL(lbAddr, "/")
	for visit := 1; visit <= 2; visit++ {
		if visit == 2 {
			// HAProxy's 1 s idle timeouts close every connection of the
			// first visit, so that the second opens new TLS connections.
			testkit.WaitFor(t, 10*time.Second, "HAProxy closed the first visit's connections", func() bool {
				n, err := harness.EstablishedTo(lbAddr)
				return err == nil && n == 0
			})
			between()
		}
		if err := b.visit(ctx, page, url); err != nil {
			t.Fatalf("visit %d: %v", visit, err)
		}
		n, err := b.eval(ctx, page, `[...document.images].filter(i => i.complete && i.naturalWidth > 0).length`)
		if err != nil {
			t.Fatal(err)
		}
		if n != fmt.Sprint(subresources) {
			t.Fatalf("visit %d: %s of %d images loaded", visit, n, subresources)
		}
	}
}

// TestBrowserResumesAcrossReplicas is the comparison described in the
// package doc. It prints "BROWSER: meshgate X/Y resumed; nginx A/B".
func TestBrowserResumesAcrossReplicas(t *testing.T) {
	chromium := requireChromium(t)
	if err := harness.RequireTools("haproxy", "nginx", "openssl"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bins, err := harness.BuildBins(dir)
	if err != nil {
		t.Fatal(err)
	}
	pki, err := harness.MakePKI(filepath.Join(dir, "pki"), harness.Host, harness.OtherHost)
	if err != nil {
		t.Fatal(err)
	}
	page := startPageServer(t, "127.0.0.11")
	man, err := harness.Manifests{EchoAddr: page, SecretYAML: pki.SecretYAML}.Write(filepath.Join(dir, "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := harness.StartCluster(t, harness.ClusterConfig{Bins: bins, Dir: dir, ManifestDir: man,
		Replicas: 3, ProxyProtocol: true}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// HAProxy closes connections idle for 1 s (see the package doc).
	lb := func(name, ip string, servers []string) string {
		h, err := harness.StartHAProxyIdle(t, dir, name, ip, servers, true, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return h.Addr
	}
	meshLB := lb("haproxy-meshgate", "127.0.0.30", cluster.HTTPSAddrs())
	// nginx: one worker each (so $connection is unique), HTTP/1.1 only,
	// one log line per request with its connection and reuse flag.
	var nginxLogs []string
	for i := 1; i <= 3; i++ {
		nginxLogs = append(nginxLogs, filepath.Join(dir, fmt.Sprintf("nginx-%d-conn.log", i)))
	}
	var nginxAddrs []string
	for i, logPath := range nginxLogs {
		addr, err := harness.FreeAddr(fmt.Sprintf("127.0.0.%d", 41+i))
		if err != nil {
			t.Fatal(err)
		}
		ng, err := harness.StartNginx(t, harness.NginxConfig{Dir: dir, Name: fmt.Sprintf("nginx-%d", i+1), Listen: addr,
			PKI: pki, Upstream: page, ProxyProtocol: true, Workers: 1, NoHTTP2: true, ConnLog: logPath})
		if err != nil {
			t.Fatal(err)
		}
		nginxAddrs = append(nginxAddrs, ng.Addr)
	}
	nginxLB := lb("haproxy-nginx", "127.0.0.50", nginxAddrs)

	var full0, res0, miss0 float64
	per0 := make([]float64, len(cluster.Replicas))
	twoVisits(t, chromium, meshLB, func() {
		full0, res0, miss0 = handshakes(t, cluster.Replicas)
		for i, r := range cluster.Replicas {
			_, per0[i], _ = handshakes(t, []*harness.Replica{r})
		}
	})
	full1, res1, miss1 := handshakes(t, cluster.Replicas)
	var perReplica []string
	for i, r := range cluster.Replicas {
		_, res, _ := handshakes(t, []*harness.Replica{r})
		perReplica = append(perReplica, fmt.Sprintf("%s %d", r.Name, int(res-per0[i])))
	}
	t.Logf("second visit's resumptions by replica: %s", strings.Join(perReplica, ", "))
	mX, mY, mMiss := int(res1-res0), int(res1-res0+full1-full0), int(miss1-miss0)

	var skip []int
	twoVisits(t, chromium, nginxLB, func() { _, _, skip = nginxConns(t, nginxLogs, nil) })
	nY, nX, _ := nginxConns(t, nginxLogs, skip)

	fmt.Printf("BROWSER: meshgate %d/%d resumed; nginx %d/%d\n", mX, mY, nX, nY)
	// Chromium keeps few single-use TLS 1.3 tickets per host, so a
	// connection may offer no session at all; what meshgate controls is
	// that every offered session resumes, wherever it lands.
	t.Logf("BROWSER: meshgate %d/%d resumed (%d offered, %d offered and missed); nginx %d/%d (second visit's TLS connections)",
		mX, mY, mX+mMiss, mMiss, nX, nY)
	if mY == 0 || nY == 0 {
		t.Fatalf("second visit opened no new TLS connections (meshgate %d, nginx %d): the idle timeout did not close them", mY, nY)
	}
	if mMiss != 0 {
		t.Errorf("meshgate: %d sessions Chromium offered did not resume", mMiss)
	}
	if mX == 0 {
		t.Errorf("meshgate resumed none of %d second-visit connections (Chromium offered none)", mY)
	}
}
