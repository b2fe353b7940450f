// Package security attacks real bin/meshgate processes: the session mesh
// port with unauthenticated, foreign, malformed and non-reading peers, and
// the HTTPS port with forged TLS session tickets and cross-host resumption.
// Every attack must be refused, counted in /metrics, leave the node serving
// HTTPS, and keep its memory bounded.
package security

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

// env is a 3-replica mesh serving harness.Host directly (no PROXY header).
type env struct {
	pki     *harness.PKI
	cluster *harness.Cluster
}

func setup(t *testing.T) *env {
	t.Helper()
	he := harness.NewEnv(t, harness.EnvOptions{Replicas: 3, Direct: true})
	pki, c := he.PKI, he.Cluster
	// Wait until the mesh is fully connected so later counters are stable.
	for _, r := range c.Replicas {
		testkit.WaitFor(t, 20*time.Second, r.Name+": mesh connected", func() bool {
			return r.MustMetric(t, "meshgate_sessionmesh_peers_online", "") >= 2
		})
	}
	return &env{pki: pki, cluster: c}
}

// rssKiB is the resident set size of pid.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := harness.RSSKiB(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
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
