package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// TestDemoSmoke runs `hack/demo.sh` in DEMO_SMOKE mode: the three-replica
// demo on its fixed ports (127.0.0.1:8443-8445 …), checked with curl,
// openssl, WebSocket, UDP and HTTP/3 clients, then stopped.
func TestDemoSmoke(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "demo.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DEMO_SMOKE=1", "BIN="+filepath.Dir(env.Bins.Meshgate), "DEMO_DIR="+t.TempDir())
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("hack/demo.sh DEMO_SMOKE=1:\n%s", out)
	if err != nil || !strings.Contains(string(out), "DEMO SMOKE: PASS") {
		t.Fatalf("demo smoke failed: %v", err)
	}
}
