package standalone

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

func manifestFor(host string) string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: meshgate
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: meshgate.io/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: http, port: 80, targetPort: 9000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: http, port: 9000}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: echo}
spec:
  rules:
  - host: %s
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
      - {path: /missing, pathType: Prefix, backend: {service: {name: nope, port: {number: 80}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
`, host)
}

type harness struct {
	t       *testing.T
	dir     string
	holder  *routing.Holder
	src     *Source
	results chan Result
	reg     *prometheus.Registry
	logs    *logBuf
	cancel  context.CancelFunc
	done    chan error
}

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func start(t *testing.T, content string, poll time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), holder: &routing.Holder{}, results: make(chan Result, 64),
		reg: prometheus.NewRegistry(), logs: &logBuf{}, done: make(chan error, 1)}
	if content != "" {
		h.write("echo.yaml", content)
	}
	log := funcr.New(func(prefix, args string) {
		h.logs.mu.Lock()
		h.logs.lines = append(h.logs.lines, args)
		h.logs.mu.Unlock()
	}, funcr.Options{})
	var err error
	h.src, err = New(Config{
		Path: h.dir, Holder: h.holder, Log: log, Registerer: h.reg,
		PollInterval: poll, HoldOff: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
		OnReload: func(r Result) {
			select {
			case h.results <- r:
			default:
				t.Error("results channel full")
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.src.Run(ctx) }()
	t.Cleanup(h.stop)
	select {
	case <-h.src.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("not synced within 10s")
	}
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Error("Run did not return within 10s")
	}
}

func (h *harness) write(name, content string) {
	h.t.Helper()
	// Write then rename, as editors and ConfigMap volumes do.
	tmp := filepath.Join(h.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.dir, name)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) next() Result {
	h.t.Helper()
	select {
	case r := <-h.results:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatal("no reload within 10s")
		return Result{}
	}
}

func (h *harness) host() string {
	t := h.holder.Load()
	if t == nil {
		return ""
	}
	for name := range t.HTTP.Hosts {
		return name
	}
	return "<none>"
}

func TestGoodBadGood(t *testing.T) {
	h := start(t, manifestFor("one.test"), 20*time.Millisecond)
	r := h.next()
	if r.Err != nil || r.Generation != 1 || len(r.Problems) != 1 || len(r.Skipped) != 1 {
		t.Fatalf("first load: %+v", r)
	}
	if got := h.host(); got != "one.test" {
		t.Fatalf("host = %q", got)
	}
	b, _ := h.holder.Load().HTTP.Backend("one.test", "/")
	if b == nil || len(b.Endpoints) != 1 || b.Endpoints[0] != "127.0.0.1:9000" {
		t.Fatalf("backend = %+v", b)
	}

	// A broken file: the error is reported, the old table keeps serving.
	h.write("echo.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: 1}\n")
	r = h.next()
	if r.Err == nil || !strings.Contains(r.Err.Error(), "echo.yaml: document 1 (Service x)") {
		t.Fatalf("bad load: %+v", r)
	}
	if h.src.LastError() == nil || h.host() != "one.test" || h.holder.Load().Generation != 1 {
		t.Fatalf("after bad load: err=%v host=%q", h.src.LastError(), h.host())
	}
	if n := h.holder.Sequence(); n != 1 {
		t.Errorf("holder sequence %d after a failed reload, want 1 (only publishes count)", n)
	}
	if v := testkit.MetricValue(t, h.reg, "meshgate_standalone_last_reload_successful", nil); v != 0 {
		t.Errorf("last_reload_successful = %v", v)
	}

	// Fixed: a new generation is published.
	h.write("echo.yaml", manifestFor("two.test"))
	r = h.next()
	if r.Err != nil || r.Generation != 2 {
		t.Fatalf("second good load: %+v", r)
	}
	if h.src.LastError() != nil || h.host() != "two.test" {
		t.Fatalf("after fix: err=%v host=%q", h.src.LastError(), h.host())
	}
	if n := h.holder.Sequence(); n != 2 {
		t.Errorf("holder sequence %d after the second publish", n)
	}
	ok, failed := h.src.Reloads()
	if ok != 2 || failed != 1 {
		t.Errorf("reloads = %d/%d, want 2/1", ok, failed)
	}
	if v := testkit.MetricValue(t, h.reg, "meshgate_standalone_reloads_total", map[string]string{"result": "failure"}); v != 1 {
		t.Errorf("failure counter = %v", v)
	}
	if v := testkit.MetricValue(t, h.reg, "meshgate_standalone_table_generation", nil); v != 2 {
		t.Errorf("generation gauge = %v", v)
	}
	// The unchanged problem and skipped document are logged once, not per
	// reload.
	logs := h.logs.String()
	if n := strings.Count(logs, `"kind"="Deployment"`); n != 1 {
		t.Errorf("skipped document logged %d times:\n%s", n, logs)
	}
	if n := strings.Count(logs, "ServiceNotFound"); n != 1 {
		t.Errorf("problem logged %d times:\n%s", n, logs)
	}
	if !strings.Contains(logs, "still serving the last good table") {
		t.Errorf("load error not logged:\n%s", logs)
	}
}

func TestReloadOnRequestAndBurst(t *testing.T) {
	h := start(t, manifestFor("one.test"), -1) // no watching
	h.next()
	// Without polling, a file change is only seen on Reload; a burst of
	// requests coalesces into one reload.
	h.write("echo.yaml", manifestFor("three.test"))
	for range 20 {
		h.src.Reload()
	}
	r := h.next()
	if r.Err != nil || h.host() != "three.test" {
		t.Fatalf("reload: %+v host %q", r, h.host())
	}
	select {
	case r := <-h.results:
		t.Fatalf("extra reload: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestFirstLoadFails(t *testing.T) {
	h := start(t, "", 20*time.Millisecond) // empty directory is fine: empty table
	if r := h.next(); r.Err != nil || h.holder.Load() == nil {
		t.Fatalf("empty dir: %+v", r)
	}

	dir := filepath.Join(t.TempDir(), "missing")
	src, err := New(Config{Path: dir, Holder: &routing.Holder{}, PollInterval: 20 * time.Millisecond,
		HoldOff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	<-src.Synced()
	if src.LastError() == nil || src.cfg.Holder.Load() != nil {
		t.Fatalf("missing path: err=%v", src.LastError())
	}
	// Creating it later recovers.
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(manifestFor("late.test")), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "a table from the late manifest", func() bool { return src.cfg.Holder.Load() != nil })
	if src.LastError() != nil {
		t.Fatalf("did not recover: %v", src.LastError())
	}
	if err := src.Run(ctx); err == nil {
		t.Error("second Run accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{Holder: &routing.Holder{}}); err == nil {
		t.Error("no path accepted")
	}
	if _, err := New(Config{Path: "x"}); err == nil {
		t.Error("no holder accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Path: "x", Holder: &routing.Holder{}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Path: "x", Holder: &routing.Holder{}, Registerer: reg}); err == nil {
		t.Error("double registration accepted")
	}
}
