// Package limits drives one real bin/meshgate to its data-plane limits:
// slowloris clients, oversized headers, thousands of idle keep-alive
// connections and hundreds of concurrent WebSockets, checking that each is
// cut off or served within bounded memory.
package limits

import (
	"context"
	"crypto/tls"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

type env struct {
	pki *harness.PKI
	r   *harness.Replica
}

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit (inherited
// by meshgate, started afterwards) and returns it.
func raiseNoFile(t *testing.T) uint64 {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	return rl.Cur
}

// setup starts the echo backend and one meshgate replica (no mesh, no
// PROXY protocol) serving harness.Host.
func setup(t *testing.T) *env {
	t.Helper()
	raiseNoFile(t)
	he := harness.NewEnv(t, harness.EnvOptions{Replicas: 1, Direct: true, NoMesh: true})
	return &env{pki: he.PKI, r: he.Cluster.Replicas[0]}
}

// tlsConfig trusts the test CA; the shared session cache makes repeated
// connections resume (cheap handshakes, as from one browser).
func (e *env) tlsConfig(t *testing.T, protos ...string) *tls.Config {
	t.Helper()
	pool, err := e.pki.Pool()
	if err != nil {
		t.Fatal(err)
	}
	if len(protos) == 0 {
		protos = []string{"http/1.1"}
	}
	return &tls.Config{ServerName: harness.Host, RootCAs: pool, NextProtos: protos,
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
}

// mustServe checks that a fresh HTTPS request succeeds.
func (e *env) mustServe(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := (&harness.Client{Config: e.tlsConfig(t)}).Do(ctx, e.r.HTTPSAddr); err != nil {
		t.Fatalf("meshgate stopped serving HTTPS: %v", err)
	}
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

// waitOpen waits until meshgate holds at least n open client connections
// (meshgate_listener_connections_open, every listener).
func (e *env) waitOpen(t *testing.T, n int, what string) {
	t.Helper()
	var open float64
	if err := testkit.Until(30*time.Second, func() bool {
		v, err := e.r.Metric("meshgate_listener_connections_open", "")
		open = v
		return err == nil && v >= float64(n)
	}); err != nil {
		t.Fatalf("%s: meshgate holds %.0f open connections, want >= %d: %v", what, open, n, err)
	}
}
