package kube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// One real kube-apiserver + etcd for the package (envtest), started by the
// first test that needs it (unit tests and fuzzing do not). The binaries
// come from hack/envtest-assets.sh (built from Go modules, cached); when
// KUBEBUILDER_ASSETS is unset the script is run here. Nothing skips: a
// control plane that cannot start fails every test that needs it.
var (
	testCfg    *rest.Config
	testClient client.Client
	testEnv    *envtest.Environment
	suiteErr   error
	envOnce    sync.Once
	nsCounter  atomic.Int64
)

func TestMain(m *testing.M) {
	log.SetLogger(logr.Discard())
	code := m.Run()
	if testEnv != nil {
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "envtest stop:", err)
		}
	}
	os.Exit(code)
}

func assetsDir() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	script, err := filepath.Abs("../../../hack/envtest-assets.sh")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS unset and %s failed: %w", script, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func startEnv() (*envtest.Environment, error) {
	dir, err := assetsDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "..", "config", "crd", "bases"), filepath.Join("..", "..", "..", "config", "crd", "gateway-api")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start control plane from %s: %w", dir, err)
	}
	scheme, err := Scheme()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	testCfg, testClient, testEnv = cfg, c, env
	return env, nil
}

// requireEnv starts the control plane once and fails the test when it
// cannot start.
func requireEnv(t testing.TB) {
	t.Helper()
	envOnce.Do(func() { _, suiteErr = startEnv() })
	if suiteErr != nil {
		t.Fatalf("envtest control plane unavailable: %v", suiteErr)
	}
}

// newNamespace creates a fresh namespace for one test.
func newNamespace(t testing.TB) string {
	t.Helper()
	requireEnv(t)
	name := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(name) > 60 {
		name = name[:60]
	}
	name = strings.TrimRight(strings.ReplaceAll(name, "_", "-"), "-")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := testClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

// startController runs a Controller until the test ends and waits for its
// first table.
func startController(t testing.TB, opts Options) *Controller {
	t.Helper()
	requireEnv(t)
	if opts.Holder == nil {
		opts.Holder = &routing.Holder{}
	}
	if tt, ok := t.(*testing.T); ok && opts.Logger.GetSink() == nil {
		opts.Logger = testr.NewWithOptions(tt, testr.Options{Verbosity: 0})
	}
	c, err := New(testCfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("controller: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("controller did not stop")
		}
	})
	if !opts.LeaderElect {
		select {
		case <-c.Synced():
		case err := <-done:
			t.Fatalf("controller stopped before syncing: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("controller did not sync")
		}
	}
	return c
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, cond)
}

// waitTable waits until the holder's table satisfies cond.
func waitTable(t testing.TB, h *routing.Holder, what string, cond func(*routing.Table) bool) *routing.Table {
	t.Helper()
	var got *routing.Table
	eventually(t, 15*time.Second, what, func() bool {
		got = h.Load()
		return got != nil && cond(got)
	})
	return got
}

func mustCreate(t testing.TB, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := testClient.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// statusPasses records the status writer's passes (Options.OnStatusApplied)
// so a test can wait until the statuses of a given table are written and
// only then assert what was not written.
type statusPasses struct {
	mu   sync.Mutex
	done uint64 // highest generation whose pass succeeded
}

func (s *statusPasses) record(gen uint64, err error) {
	if err != nil {
		return
	}
	s.mu.Lock()
	s.done = max(s.done, gen)
	s.mu.Unlock()
}

// wait blocks until a pass for table generation gen or later succeeded.
func (s *statusPasses) wait(t testing.TB, gen uint64) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("status pass for table generation %d", gen), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.done >= gen
	})
}
