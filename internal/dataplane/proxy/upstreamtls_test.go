package proxy

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestBackendTLSVerification sends requests to an HTTPS backend under
// BackendTLSPolicy-style settings: the right CA and name pass, a wrong CA
// or a name the certificate lacks fail with 502 (never an unverified
// fallback).
func TestBackendTLSVerification(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-TLS", r.TLS.ServerName)
	}))
	t.Cleanup(srv.Close)
	good := x509.NewCertPool()
	good.AddCert(srv.Certificate())
	bad := x509.NewCertPool()
	bad.AddCert(otherCA(t))
	addr := addrOf(srv)
	mk := func(name string, up *routing.UpstreamTLS) *routing.VirtualHost {
		b := be(name, addr)
		b.TLS = up
		return vhost(name, prefix("/", b))
	}
	var holder tables
	holder.Store(table(1,
		mk("ok.test", &routing.UpstreamTLS{Key: "ok", ServerName: "example.com", RootCAs: good}),
		mk("wrong-ca.test", &routing.UpstreamTLS{Key: "bad", ServerName: "example.com", RootCAs: bad}),
		mk("wrong-name.test", &routing.UpstreamTLS{Key: "name", ServerName: "other.example.org", RootCAs: good}),
		mk("san.test", &routing.UpstreamTLS{Key: "san", ServerName: "ignored.test", RootCAs: good, DNSNames: []string{"nope.test", "example.com"}}),
		mk("bad-san.test", &routing.UpstreamTLS{Key: "badsan", ServerName: "example.com", RootCAs: good, DNSNames: []string{"nope.test"}}),
	))
	_, fe := newProxy(t, &holder, Config{})
	for host, want := range map[string]int{"ok.test": 200, "wrong-ca.test": 502, "wrong-name.test": 502, "san.test": 200, "bad-san.test": 502} {
		resp, _ := do(t, http.DefaultClient, "GET", fe.URL+"/", host, nil)
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", host, resp.StatusCode, want)
		}
		if want == 200 && resp.Header.Get("X-Seen-TLS") == "" {
			t.Errorf("%s: backend saw no SNI", host)
		}
	}
}

// otherCA returns a self-signed CA certificate that signed nothing the
// test servers present.
func otherCA(t *testing.T) *x509.Certificate {
	return testkit.NewCA(t, "other CA").Cert.Leaf
}
