// Package harness starts the real processes meshgate's end-to-end tests and
// benchmarks drive: meshgate replicas in standalone mode, the echo backend,
// HAProxy in TCP mode (the cloud load balancer stand-in, sending PROXY v2)
// and a trio of nginx servers as the comparison, all on 127.0.0.0/8.
//
// Every process is started in its own process group and registered with
// T.Cleanup, which kills the whole group, so a failing test leaves nothing
// behind. Nothing here is safe for concurrent use unless stated otherwise:
// one test (or one benchmark run) owns the values it creates.
package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// T is the part of testing.TB the harness needs. *testing.T satisfies it;
// the benchmark program supplies its own (see Runner).
type T interface {
	Helper()
	Logf(format string, args ...any)
	Cleanup(func())
}

// Host is the virtual host every scenario serves (the demo's name).
const Host = "echo.meshgate.test"

// OtherHost is a second virtual host on the same certificate and backend,
// for checks that a session issued for Host does not resume for it.
const OtherHost = "other.meshgate.test"

// RepoRoot returns the directory holding meshgate's go.mod, searched from
// the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(firstLine(string(b)), "module github.com/meshgate/meshgate") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repo root: no meshgate go.mod above the working directory")
		}
		dir = parent
	}
}

func firstLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	if sc.Scan() {
		return strings.TrimSpace(sc.Text())
	}
	return ""
}

// Bins locates the binaries the harness runs.
type Bins struct {
	Meshgate string // bin/meshgate
	Echo     string // bin/echo-backend
}

// BuildBins returns the binaries in $MESHGATE_BIN when both exist there
// (what `make test` passes), and otherwise builds them with `go build` into
// dir. It never uses stale binaries from elsewhere.
func BuildBins(dir string) (Bins, error) {
	if d := os.Getenv("MESHGATE_BIN"); d != "" {
		b := Bins{Meshgate: filepath.Join(d, "meshgate"), Echo: filepath.Join(d, "echo-backend")}
		if isFile(b.Meshgate) && isFile(b.Echo) {
			return b, nil
		}
	}
	b := Bins{Meshgate: filepath.Join(dir, "meshgate"), Echo: filepath.Join(dir, "echo-backend")}
	if err := GoBuild("./cmd/meshgate", b.Meshgate); err != nil {
		return Bins{}, err
	}
	if err := GoBuild("./test/echo", b.Echo); err != nil {
		return Bins{}, err
	}
	return b, nil
}

// GoBuild runs `go build -o out pkg` in the repository root.
func GoBuild(pkg, out string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if outb, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, outb)
	}
	return nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// debianPackages maps the commands the harness runs to their Debian package.
var debianPackages = map[string]string{
	"haproxy": "haproxy",
	"nginx":   "nginx",
	"curl":    "curl",
	"openssl": "openssl",
	"h2load":  "nghttp2-client",
	// Ticketless TLS 1.2 clients of the session-ID path's interop tests.
	"gnutls-cli": "gnutls-bin",
	"java":       "openjdk-17-jre-headless",
	"python3":    "python3",
	"strace":     "strace",
	// Real browser of test/browser (headless, driven over DevTools).
	"chromium": "chromium",
}

var installMu sync.Mutex

// RequireTools makes sure every named command is on PATH, installing the
// Debian package with apt-get when one is missing. It returns an error
// (never skips) when that is impossible; callers fail the test with it.
// Safe for concurrent use.
func RequireTools(cmds ...string) error {
	installMu.Lock()
	defer installMu.Unlock()
	var missing []string
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			pkg, ok := debianPackages[c]
			if !ok {
				return fmt.Errorf("tool %s missing and no package known for it", c)
			}
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("tools missing (%s) and not root: apt-get install -y %s", strings.Join(missing, " "), strings.Join(missing, " "))
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Debian starts the system services on install; ours run on their own ports.
	for _, svc := range []string{"nginx", "haproxy"} {
		_ = exec.Command("service", svc, "stop").Run()
	}
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("tool %s still missing after apt-get install: %w", c, err)
		}
	}
	return nil
}
