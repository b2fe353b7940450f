package server

import (
	"context"
	"crypto/tls"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"net/http"

	"github.com/meshgate/meshgate/internal/testkit"
)

// sessionIDFixture serves the session-ID path from the fixture's session
// node, which also counts its handshakes.
func sessionIDFixture(t *testing.T) *fixture {
	return newFixtureWith(t, fixtureOpts{sessionIDs: true}, nil)
}

func (f *fixture) kindCount(t *testing.T, kind, resumed string) float64 {
	v, _ := testkit.MetricSum(t, f.reg, "meshgate_tls_handshakes_by_kind_total", map[string]string{"kind": kind, "resumed": resumed})
	return v
}

// TestSessionIDPathRouting: ticketless TLS 1.2 hellos take the session-ID
// path, TLS 1.2 hellos with tickets and TLS 1.3 hellos stay on crypto/tls;
// HTTP/1.1 and HTTP/2 work over the path, with Request.TLS set.
func TestSessionIDPathRouting(t *testing.T) {
	f := sessionIDFixture(t)
	base := func() *tls.Config {
		return &tls.Config{RootCAs: f.ca.pool, ServerName: "a.example.com", MaxVersion: tls.VersionTLS12, SessionTicketsDisabled: true}
	}
	for _, h2 := range []bool{false, true} {
		c := f.client(t, h2)
		tr := c.Transport.(*http.Transport)
		tr.TLSClientConfig = base()
		if h2 {
			tr.TLSClientConfig.NextProtos = []string{"h2", "http/1.1"}
		}
		code, e, proto := get(t, c, "https://a.example.com/x")
		if code != 200 || e == nil || e.Hdr.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("h2 %v: %d %+v", h2, code, e)
		}
		if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]; proto != want {
			t.Fatalf("proto %s, want %s", proto, want)
		}
	}
	if got := f.kindCount(t, "session_id", "false"); got != 2 {
		t.Fatalf("session-ID path full handshakes: %v", got)
	}
	withTickets := base()
	withTickets.SessionTicketsDisabled = false
	withTickets.ClientSessionCache = tls.NewLRUClientSessionCache(1) // Go sends session_ticket only with a cache
	if _, err := handshake(t, f, withTickets); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, f, &tls.Config{RootCAs: f.ca.pool, ServerName: "a.example.com"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "crypto/tls handshakes counted", func() bool {
		return f.kindCount(t, "tls12_ticket", "false") == 1 && f.kindCount(t, "tls13_psk", "false") == 1
	})
	for kind, want := range map[string]float64{"tls12_ticketless": 2, "tls12_ticket": 1, "tls13": 1} {
		if v, _ := testkit.MetricSum(t, f.reg, "meshgate_tls_client_hellos_total", map[string]string{"kind": kind}); v != want {
			t.Errorf("client_hellos_total{kind=%s} = %v, want %v", kind, v, want)
		}
	}
}

// TestSessionIDPathOpenSSL: a real ticketless OpenSSL client resumes its
// session by ID through the server, and the resumption is counted.
func TestSessionIDPathOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not installed (hack/install-deps.sh): %v", err)
	}
	f := sessionIDFixture(t)
	sess := filepath.Join(t.TempDir(), "s.pem")
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, append([]string{"s_client", "-connect", f.httpsAddr(), "-tls1_2", "-no_ticket", "-servername", "a.example.com", "-ign_eof"}, args...)...)
		cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run("-sess_out", sess); !strings.Contains(out, "New, TLSv1.2") || !strings.Contains(out, "HTTP/1.1 200") {
		t.Fatalf("first:\n%s", out)
	}
	if out := run("-sess_in", sess); !strings.Contains(out, "Reused, TLSv1.2") || !strings.Contains(out, "HTTP/1.1 200") {
		t.Fatalf("resume:\n%s", out)
	}
	if got := f.kindCount(t, "session_id", "true"); got != 1 {
		t.Fatalf("session-ID resumptions counted: %v", got)
	}
}
