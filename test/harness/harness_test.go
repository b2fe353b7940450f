package harness

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"
)

// TestNginxTrioBehindHAProxy checks the comparison side of the harness on
// its own (no meshgate needed): each nginx node resumes its own sessions,
// and round robin over three nodes defeats the per-node caches.
func TestNginxTrioBehindHAProxy(t *testing.T) {
	if err := RequireTools("haproxy", "nginx", "openssl"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bins := Bins{Echo: filepath.Join(dir, "echo-backend")}
	if err := GoBuild("./test/echo", bins.Echo); err != nil {
		t.Fatal(err)
	}
	pki, err := MakePKI(filepath.Join(dir, "pki"), Host)
	if err != nil {
		t.Fatal(err)
	}
	echo, err := StartEcho(t, bins, dir, "127.0.0.10")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name    string
		tickets bool
		version uint16
	}{
		{"tls13 session cache", false, tls.VersionTLS13},
		{"tls12 per-node tickets", true, tls.VersionTLS12},
		{"tls13 per-node tickets", true, tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ng, err := StartNginxTrio(t, dir, "ng-"+filepath.Base(t.Name()), 3, pki, echo.HTTPAddr, tc.tickets)
			if err != nil {
				t.Fatal(err)
			}
			lb, err := StartHAProxy(t, dir, "lb-"+filepath.Base(t.Name()), "127.0.0.50", NginxAddrs(ng), true)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := pki.ClientConfig(tc.version)
			if err != nil {
				t.Fatal(err)
			}
			direct := (&Client{Config: cfg}).Reconnect(ctx, lb.Direct[0], 20, 0)
			cfg2, _ := pki.ClientConfig(tc.version)
			rr := (&Client{Config: cfg2}).Reconnect(ctx, lb.Addr, 30, 0)
			t.Logf("nginx direct: %v ; round robin: %v", direct, rr)
			if direct.Errors > 0 || rr.Errors > 0 {
				t.Fatalf("errors: direct %v rr %v", direct.FirstErr, rr.FirstErr)
			}
			if direct.Rate() < 99 {
				t.Errorf("single nginx node resumed only %v", direct)
			}
			if rr.Rate() > 10 {
				t.Errorf("round robin over per-node caches resumed %v; want almost none", rr)
			}
			load := Load(ctx, cfg, lb.Addr, 4, 10, nil)
			if load.Errors > 0 || load.Conns != 40 {
				t.Errorf("concurrent load: %v", load)
			}
		})
	}
}

func TestStats(t *testing.T) {
	for _, tc := range []struct {
		s    Stats
		want string
	}{
		{Stats{Conns: 299, Resumed: 299}, "299/299 resumed (100.0%)"},
		{Stats{Conns: 299, Resumed: 2}, "2/299 resumed (0.7%)"},
		{Stats{}, "0/0 resumed (0.0%)"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("got %q want %q", got, tc.want)
		}
	}
}
