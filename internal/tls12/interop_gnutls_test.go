package tls12

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestGnuTLSInterop: gnutls-cli without tickets, TLS 1.2 only, connects
// and resumes its session by ID (--resume).
func TestGnuTLSInterop(t *testing.T) {
	for _, c := range []struct{ key, prio string }{
		{"rsa", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM"},
		{"ecdsa", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305"},
	} {
		t.Run(c.key, func(t *testing.T) {
			addr, _ := serve(t, &Config{Certificate: sharedCert(t, c.key), Sessions: newMemCache(), NextProtos: []string{"h2", "http/1.1"}})
			host, port, _ := net.SplitHostPort(addr)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, requireTool(t, "gnutls-cli"), "--insecure", "--noticket", "--resume",
				"--priority", c.prio, "--sni-hostname", "a.example.test", "--alpn", "http/1.1", "-p", port, host)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("gnutls-cli: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "This is a resumed session") {
				t.Fatalf("not resumed:\n%s", out)
			}
		})
	}
}
