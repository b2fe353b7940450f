package replica

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

func selfSigned(t *testing.T, name string) *tls.Certificate {
	t.Helper()
	return testkit.SelfSigned(t, name)
}

func backend(t *testing.T, body string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) }))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func table(gen uint64, cert *tls.Certificate, endpoint string) *routing.Table {
	b := &routing.Backend{Name: "ns/app:80", Endpoints: []string{endpoint}}
	return &routing.Table{
		Generation: gen,
		HTTP: routing.HTTPRoutes{Hosts: map[string]*routing.VirtualHost{"app.example.com": {Name: "app.example.com",
			Routes: []routing.Route{{PathType: routing.PathPrefix, Path: "/", Backend: b}}}}},
		TLS: routing.TLSHosts{Exact: map[string]*routing.TLSHost{
			"app.example.com": {Name: "app.example.com", Certificate: cert, Policy: routing.DefaultPolicy()}}},
	}
}

// TestReplicaFollowsTables runs a replica on a holder: the table present at
// Run is served from the first connection, a new table is served once
// Applied holds it, and Run drains and returns when its context ends.
func TestReplicaFollowsTables(t *testing.T) {
	cert := selfSigned(t, "app.example.com")
	var tables routing.Holder
	tables.Store(table(1, cert, backend(t, "one")))
	r, err := New(Config{Tables: &tables, NodeName: "r1", HTTPSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		MetricsAddr: "127.0.0.1:0", ShutdownGrace: 5 * time.Second, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := r.Applied().Wait(wctx, func(tb *routing.Table) bool { return tb.Generation == 1 }); err != nil {
		t.Fatal(err)
	}
	<-r.Started()
	if err := r.adm.Ready(wctx); err != nil {
		t.Fatalf("not ready after the first table: %v", err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, r.HTTPSAddr().String())
		}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if got := body(t, c); got != "one" {
		t.Fatalf("generation 1 answered %q", got)
	}

	tables.Store(table(2, cert, backend(t, "two")))
	if _, err := r.Applied().Wait(wctx, func(tb *routing.Table) bool { return tb.Generation == 2 }); err != nil {
		t.Fatal(err)
	}
	tr.CloseIdleConnections()
	if got := body(t, c); got != "two" {
		t.Fatalf("generation 2 answered %q", got)
	}
	if g := gauge(t, r, "meshgate_dataplane_table_generation"); g != 2 {
		t.Errorf("generation gauge %v, want 2", g)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// Nothing is applied after the drain began.
	tables.Store(table(3, cert, backend(t, "three")))
	if r.apply(tables.Load()) || r.Applied().Load().Generation != 2 {
		t.Fatal("a table was applied after Run returned")
	}
}

func body(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, err := c.Get("https://app.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func gauge(t *testing.T, r *Replica, name string) float64 {
	t.Helper()
	mfs, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s missing", name)
	return 0
}

func TestAddrHelpers(t *testing.T) {
	if portOf("127.0.0.1:8443") != 8443 || portOf("nope") != 0 || hostOf("[::1]:1") != "::1" {
		t.Fatal("portOf/hostOf")
	}
	if _, err := New(Config{NodeName: "x"}); err == nil {
		t.Fatal("New without Tables succeeded")
	}
}
