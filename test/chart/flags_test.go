package chart

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// meshgateBinary returns a meshgate binary: $MESHGATE_BIN/meshgate when
// the Makefile built one, else a fresh build of ./cmd/meshgate.
func meshgateBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("MESHGATE_BIN"); dir != "" {
		p := filepath.Join(dir, "meshgate")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "meshgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/meshgate")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/meshgate: %v\n%s", err, b)
	}
	return out
}

var flagLine = regexp.MustCompile(`(?m)^\s+-{1,2}([a-z0-9][a-z0-9-]*)`)

// runFlags lists the flags `meshgate run -h` prints.
func runFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "run", "-h").CombinedOutput() // -h exits non-zero with flag's ErrHelp
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("`meshgate run -h` lists no flags:\n%s", out)
	}
	return flags
}

// TestArgsMatchMeshgateRun: every flag the chart passes, in every case,
// is one `meshgate run` defines, so a renamed flag breaks this test
// instead of a rollout.
func TestArgsMatchMeshgateRun(t *testing.T) {
	known := runFlags(t, meshgateBinary(t))
	for _, tc := range allCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.in)
			args := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args
			for _, a := range args[1:] {
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !strings.HasPrefix(a, "-") || !known[name] {
					t.Errorf("argument %q: `meshgate run` has no flag %q", a, name)
				}
			}
		})
	}
}
