package replica

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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
	if g := testkit.MetricValue(t, r.Registry(), "meshgate_dataplane_table_generation", nil); g != 2 {
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

func TestAddrHelpers(t *testing.T) {
	if portOf("127.0.0.1:8443") != 8443 || portOf("nope") != 0 || hostOf("[::1]:1") != "::1" {
		t.Fatal("portOf/hostOf")
	}
	if _, err := New(Config{NodeName: "x"}); err == nil {
		t.Fatal("New without Tables succeeded")
	}
}

// The revocation endpoint is on the admin listener only with a token file,
// and only with the token (issue 15, finding 10).
func TestRevokeEndpointNeedsToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, withToken := range []bool{false, true} {
		var tables routing.Holder
		cfg := Config{Tables: &tables, NodeName: "r1", HTTPSAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
			ShutdownGrace: time.Second, Log: testr.New(t)}
		if withToken {
			cfg.AdminTokenFile = tokenFile
		}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		<-r.Started()
		post := func(auth string) int {
			req, _ := http.NewRequest(http.MethodPost, r.adm.URL("/sessionmesh/revoke"), strings.NewReader(`{"issued_before":"2030-01-01T00:00:00Z"}`))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if withToken {
			if got := post(""); got != http.StatusUnauthorized {
				t.Errorf("no token: %d, want 401", got)
			}
			if got := post("Bearer s3cret"); got != http.StatusOK {
				t.Errorf("with the token: %d, want 200", got)
			}
		} else if got := post("Bearer s3cret"); got != http.StatusNotFound && got != http.StatusMethodNotAllowed {
			t.Errorf("without a token file the endpoint answered %d", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
