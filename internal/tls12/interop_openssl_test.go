package tls12

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// requireTool finds a Debian client the interop tests drive; missing, the
// test fails loudly (hack/install-deps.sh installs it) rather than skip.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed (run hack/install-deps.sh): %v", name, err)
	}
	return p
}

// sClient runs openssl s_client against addr with args and returns its
// output. Stdin is closed, so s_client ends after the handshake(s).
func sClient(t *testing.T, addr string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []string{"s_client", "-connect", addr, "-tls1_2", "-no_ticket", "-servername", "a.example.test"}
	out, err := exec.CommandContext(ctx, requireTool(t, "openssl"), append(base, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

var sessionLine = regexp.MustCompile(`(?m)^(New|Reused), TLSv1\.2, Cipher is (\S+)`)

// TestOpenSSLInterop resumes real OpenSSL sessions by session ID: a full
// handshake saved with -sess_out, resumed with -sess_in, and s_client's
// own -reconnect loop (five resumptions of one session).
func TestOpenSSLInterop(t *testing.T) {
	cases := []struct{ key, cipher, curve string }{
		{"rsa", "ECDHE-RSA-AES128-GCM-SHA256", "X25519"},
		{"rsa", "ECDHE-RSA-AES256-GCM-SHA384", "P-256"},
		{"rsa", "ECDHE-RSA-CHACHA20-POLY1305", "X25519"},
		{"ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256", "P-256"},
		{"ecdsa", "ECDHE-ECDSA-AES256-GCM-SHA384", "X25519:P-256"},
		{"ecdsa", "ECDHE-ECDSA-CHACHA20-POLY1305", "P-256"},
	}
	for _, c := range cases {
		t.Run(c.key+"/"+c.cipher+"/"+c.curve, func(t *testing.T) {
			cache := newMemCache()
			addr, _ := serve(t, &Config{Certificate: sharedCert(t, c.key), Sessions: cache, NextProtos: []string{"h2", "http/1.1"}})
			sess := filepath.Join(t.TempDir(), "sess.pem")
			args := []string{"-cipher", c.cipher, "-curves", c.curve, "-alpn", "h2,http/1.1"}
			out := sClient(t, addr, append(args, "-sess_out", sess)...)
			if m := sessionLine.FindStringSubmatch(out); m == nil || m[1] != "New" || m[2] != c.cipher {
				t.Fatalf("first handshake: %v\n%s", m, out)
			}
			if !strings.Contains(out, "ALPN protocol: h2") || !strings.Contains(out, "Extended master secret: yes") {
				t.Fatalf("ALPN or EMS missing:\n%s", out)
			}
			for range 2 {
				out = sClient(t, addr, append(args, "-sess_in", sess)...)
				if m := sessionLine.FindStringSubmatch(out); m == nil || m[1] != "Reused" {
					t.Fatalf("-sess_in did not resume: %v\n%s", m, out)
				}
			}
			out = sClient(t, addr, append(args, "-reconnect")...)
			var reused int
			for _, m := range sessionLine.FindAllStringSubmatch(out, -1) {
				if m[1] == "Reused" {
					reused++
				}
			}
			if reused != 5 {
				t.Fatalf("-reconnect resumed %d of 5:\n%s", reused, out)
			}
		})
	}
}

// TestOpenSSLRenegotiationRefused: s_client's "R" command asks to
// renegotiate; the server answers no_renegotiation and Read reports
// ErrRenegotiation.
func TestOpenSSLRenegotiationRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	readErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			readErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		sc := Server(c, &Config{Certificate: sharedCert(t, "ecdsa")})
		_, err = sc.Read(make([]byte, 100))
		readErr <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, requireTool(t, "openssl"), "s_client", "-connect", ln.Addr().String(), "-tls1_2", "-no_ticket")
	cmd.Stdin = strings.NewReader("R\n")
	out, _ := cmd.CombinedOutput() // s_client fails on the refusal
	if !strings.Contains(string(out), "RENEGOTIATING") || !strings.Contains(string(out), "no renegotiation") {
		t.Fatalf("s_client did not see the refusal:\n%s", out)
	}
	if err := <-readErr; !errors.Is(err, ErrRenegotiation) {
		t.Fatalf("server Read: %v, want ErrRenegotiation", err)
	}
}
