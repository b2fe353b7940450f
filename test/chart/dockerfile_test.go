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
)

// TestDockerfileBuildContext checks the image build without a Docker
// engine: the build stage's COPY lines carry everything ./cmd/meshgate
// needs (the same `go build` succeeds in a directory holding only those
// paths), and the final stage is distroless or scratch and runs as a
// non-root user.
func TestDockerfileBuildContext(t *testing.T) {
	df := string(readRepoFile(t, "Dockerfile"))
	stages := regexp.MustCompile(`(?m)^FROM `).Split(df, -1)
	if len(stages) < 3 {
		t.Fatalf("want a build stage and a final stage, got %d FROM lines", len(stages)-1)
	}
	final := stages[len(stages)-1]
	base := strings.Fields(final)[0]
	if !strings.HasPrefix(base, "gcr.io/distroless/") && base != "scratch" {
		t.Errorf("final base image %s is neither distroless nor scratch", base)
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(final)
	if user == nil || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Errorf("final stage USER %v, want a non-root user", user)
	}

	ctxDir := t.TempDir()
	for _, m := range regexp.MustCompile(`(?m)^COPY\s+([^-\n][^\n]*)$`).FindAllStringSubmatch(stages[1], -1) {
		f := strings.Fields(m[1])
		for _, src := range f[:len(f)-1] {
			copyTree(t, filepath.Join(repoRoot, src), filepath.Join(ctxDir, src))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(t.TempDir(), "meshgate"), "./cmd/meshgate")
	cmd.Dir = ctxDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-buildvcs=false -mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in the Dockerfile's build context: %v\n%s", err, out)
	}
}

// copyTree copies a file or directory (without tests and testdata, like
// .dockerignore). No -trimpath here, unlike the Dockerfile, so the
// dependencies come from the build cache.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			if info.Name() == "testdata" {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
