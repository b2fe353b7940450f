// Package security attacks real bin/meshgate processes: the session mesh
// port with unauthenticated, foreign, malformed and non-reading peers, and
// the HTTPS port with forged TLS session tickets and cross-host resumption.
// Every attack must be refused, counted in /metrics, leave the node serving
// HTTPS, and keep its memory bounded.
package security

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// env is a 3-replica mesh serving harness.Host directly (no PROXY header).
type env struct {
	pki     *harness.PKI
	cluster *harness.Cluster
}

func setup(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	bins, err := harness.BuildBins(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.RequireTools("openssl"); err != nil {
		t.Fatal(err)
	}
	pki, err := harness.MakePKI(filepath.Join(dir, "pki"), harness.Host, harness.OtherHost)
	if err != nil {
		t.Fatal(err)
	}
	echo, err := harness.StartEcho(t, bins, dir, "127.0.0.10")
	if err != nil {
		t.Fatal(err)
	}
	man, err := harness.Manifests{EchoAddr: echo.HTTPAddr, SecretYAML: pki.SecretYAML}.Write(filepath.Join(dir, "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := harness.StartCluster(t, harness.ClusterConfig{Bins: bins, Dir: dir, ManifestDir: man, Replicas: 3}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the mesh is fully connected so later counters are stable.
	deadline := time.Now().Add(20 * time.Second)
	for _, r := range c.Replicas {
		for metric(t, r, "meshgate_sessionmesh_peers_online", "") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: mesh not connected", r.Name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return &env{pki: pki, cluster: c}
}

// metric sums every sample of name whose label set contains labelSub
// ("" = all) in the replica's /metrics.
func metric(t *testing.T, r *harness.Replica, name, labelSub string) float64 {
	t.Helper()
	body, err := r.Get("/metrics")
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return sumMetric(body, name, labelSub)
}

func sumMetric(body, name, labelSub string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[:end+1], rest[end+1:]
		}
		if !strings.HasPrefix(rest, " ") || (labelSub != "" && !strings.Contains(labels, labelSub)) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// clientConfig trusts the test CA for host.
func (e *env) clientConfig(t *testing.T, host string) *tls.Config {
	t.Helper()
	pool, err := e.pki.Pool()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{ServerName: host, RootCAs: pool, NextProtos: []string{"http/1.1"}}
}

// mustServe checks that a fresh HTTPS request through r succeeds.
func (e *env) mustServe(t *testing.T, r *harness.Replica) {
	t.Helper()
	c := &harness.Client{Config: e.clientConfig(t, harness.Host)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Do(ctx, r.HTTPSAddr); err != nil {
		t.Fatalf("%s stopped serving HTTPS: %v", r.Name, err)
	}
}
