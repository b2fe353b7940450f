package server

import (
	"crypto/tls"
	"sync"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
)

func TestTLSConfigCache(t *testing.T) {
	ca := newCA(t)
	cert := ca.leaf(t, "a.example.com")
	mk := func(gen uint64) *routing.Table {
		return &routing.Table{Generation: gen, TLS: routing.TLSHosts{
			Exact:   map[string]*routing.TLSHost{"a.example.com": tlsHost("a.example.com", cert)},
			Default: tlsHost("", cert),
		}}
	}
	rec := &recordingSessions{hosts: map[string]int{}}
	holder := &routing.Holder{}
	tc := &tlsConfigs{holder: holder, sessions: rec}
	hello := &tls.ClientHelloInfo{ServerName: "a.example.com"}

	if _, err := tc.getConfigForClient(hello); err == nil {
		t.Fatal("config without a table")
	}
	old := mk(1)
	holder.Store(old)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tc.getConfigForClient(hello); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	first, _ := tc.getConfigForClient(hello)
	if n := rec.calls; n != 2 {
		t.Fatalf("configured %d hosts, want 2 (built once despite concurrent handshakes)", n)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = tc.getConfigForClient(hello) }); allocs != 0 {
		t.Fatalf("getConfigForClient allocates %v times per handshake, want 0", allocs)
	}

	cur := mk(2)
	holder.Store(cur)
	second, _ := tc.getConfigForClient(hello)
	if second == first || second.NextProtos[0] != "h2" {
		t.Fatal("config not rebuilt for the new table")
	}
	// A handshake still holding the old table gets a one-off config and
	// leaves the current cache alone.
	if c := tc.configFor(old, old.TLS.Exact["a.example.com"]); c == nil || c == second {
		t.Fatal("stale table: want a fresh one-off config")
	}
	if again, _ := tc.getConfigForClient(hello); again != second {
		t.Fatal("stale handshake evicted the current table's configs")
	}
	if got := tc.configFor(cur, cur.TLS.Default); got == nil || len(got.Certificates) != 1 {
		t.Fatal("default host config missing")
	}
}
