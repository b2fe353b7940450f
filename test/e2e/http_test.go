package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// clientIP is the source address the curl client uses; HAProxy carries it
// to meshgate in the PROXY v2 header, and meshgate must report it in
// X-Forwarded-For rather than HAProxy's own address.
const clientIP = "127.0.0.99"

// echoReply is the part of test/echo's JSON reply the tests read.
type echoReply struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
}

func TestCurlThroughHAProxy(t *testing.T) {
	for _, tc := range []struct {
		name, flag, wantVersion string
	}{
		{"http1.1", "--http1.1", "1.1"},
		{"http2", "--http2", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "curl", "-sS", "--fail", "--max-time", "10", tc.flag,
				"--cacert", env.PKI.CACert, "--resolve", harness.ResolveArg(env.MeshLB.Addr),
				"--interface", clientIP, "-w", "\n%{http_version}",
				harness.URL(env.MeshLB.Addr, "/e2e/curl?x=1")).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			text := strings.TrimSpace(string(out))
			i := strings.LastIndexByte(text, '\n')
			if i < 0 {
				t.Fatalf("curl output without version line: %q", text)
			}
			body, version := text[:i], text[i+1:]
			if version != tc.wantVersion {
				t.Errorf("HTTP version %q, want %q", version, tc.wantVersion)
			}
			var r echoReply
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			if r.Path != "/e2e/curl" || !strings.HasPrefix(r.Host, harness.Host) {
				t.Errorf("echo saw path %q host %q", r.Path, r.Host)
			}
			xff := strings.Join(r.Headers["X-Forwarded-For"], ",")
			if first, _, _ := strings.Cut(xff, ","); strings.TrimSpace(first) != clientIP {
				t.Errorf("X-Forwarded-For = %q, want %s (from PROXY v2)", xff, clientIP)
			}
		})
	}
}

func TestWebSocketThroughHAProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, env.Bins.Echo, "ws-client",
		"--url", "wss://"+net.JoinHostPort(harness.Host, harness.Port(env.MeshLB.Addr))+"/ws",
		"--cacert", env.PKI.CACert, "--connect", env.MeshLB.Addr, "--message", "e2e websocket").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "e2e websocket" {
		t.Fatalf("websocket round trip: %v\n%s", err, out)
	}
}

// TestUDPEchoThroughL4 sends a datagram to each replica's L4 UDP port
// (bound on the replica's own IP, like pods) and expects the echo.
func TestUDPEchoThroughL4(t *testing.T) {
	for _, r := range env.Cluster.Replicas {
		t.Run(r.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			addr := net.JoinHostPort(r.IP, strconv.Itoa(udpPort))
			var lastErr error
			var out []byte
			for try := 0; try < 3; try++ { // UDP: the first datagram may race the flow setup
				out, lastErr = exec.CommandContext(ctx, env.Bins.Echo, "udp-client", "--addr", addr,
					"--message", "e2e udp", "--timeout", "2s").CombinedOutput()
				if lastErr == nil {
					break
				}
			}
			if lastErr != nil || strings.TrimSpace(string(out)) != "e2e udp" {
				t.Fatalf("udp echo via %s: %v\n%s", addr, lastErr, out)
			}
		})
	}
}
