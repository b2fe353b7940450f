package h2

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Interop with the Debian HTTP/2 clients (hack/install-deps.sh installs
// them; missing, the tests fail rather than skip).

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed (run hack/install-deps.sh): %v", name, err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, requireTool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestCurl: GET, a POST upload of 1 MiB (flow control on the request
// side) and "Expect: 100-continue", over TLS and with prior knowledge.
func TestCurl(t *testing.T) {
	for _, tlsOn := range []bool{true, false} {
		ts := newTestServer(t, tlsOn, nil)
		flag := "--http2-prior-knowledge"
		if tlsOn {
			flag = "--http2"
		}
		out := run(t, "curl", "-sS", "-k", flag, "-i", ts.url("/p?x=1"))
		if !strings.HasPrefix(out, "HTTP/2 200") || !strings.Contains(out, "GET "+ts.addr+" /p?x=1 /p") {
			t.Fatalf("curl GET:\n%s", out)
		}
		file := filepath.Join(t.TempDir(), "up")
		if err := os.WriteFile(file, []byte(strings.Repeat("u", 1<<20)), 0o600); err != nil {
			t.Fatal(err)
		}
		out = run(t, "curl", "-sS", "-k", flag, "-H", "Expect: 100-continue", "--data-binary", "@"+file, ts.url("/up"))
		_, body, _ := strings.Cut(out, "\n")
		if n := strings.Count(body, "u"); n != 1<<20 {
			t.Fatalf("curl upload echoed %d bytes, want %d", n, 1<<20)
		}
	}
}

// TestNghttp: nghttp's concurrent streams, with a small window so that
// responses wait for WINDOW_UPDATE.
func TestNghttp(t *testing.T) {
	ts := newTestServer(t, true, nil)
	out := run(t, "nghttp", "-nv", "-w", "14", "-W", "16", ts.url("/big/300000"), ts.url("/big/300001"),
		ts.url("/big/300002"), ts.url("/stream/50000"))
	if strings.Count(out, ":status: 200") != 4 || strings.Contains(out, "recv RST_STREAM") || strings.Contains(out, "recv GOAWAY") {
		t.Fatalf("nghttp:\n%s", out)
	}
}

// TestH2load: many streams on few connections, every request answered.
func TestH2load(t *testing.T) {
	ts := newTestServer(t, true, nil)
	out := run(t, "h2load", "-n", "4000", "-c", "4", "-m", "16", ts.url("/"))
	if !strings.Contains(out, "4000 succeeded, 0 failed, 0 errored") {
		t.Fatalf("h2load:\n%s", out)
	}
}
