package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/meshgate/meshgate/internal/testkit"
)

// selfSigned returns a certificate for name and its PEM, valid for an hour.
func selfSigned(t *testing.T, name string) (tls.Certificate, []byte) {
	t.Helper()
	c := testkit.NewCert(t, testkit.Spec{Names: []string{name}})
	return *c.TLS, c.CertPEM
}

func TestH3ClientResumesAcrossConnections(t *testing.T) {
	cert, caPEM := selfSigned(t, "h3.test")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		Handler:   newHandler(BackendInfo{Name: "h3"}),
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
	}
	go func() { _ = srv.Serve(pc) }()
	t.Cleanup(func() { _ = srv.Close(); _ = pc.Close() })
	addr := pc.LocalAddr().String()
	_, port, _ := net.SplitHostPort(addr)

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = runH3Client(ctx, []string{"--url", "https://h3.test:" + port + "/x", "--cacert", caFile,
		"--connect", addr + "," + addr, "--want-resume"}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "resumed=true") {
		t.Fatalf("output %q", out.String())
	}
}
