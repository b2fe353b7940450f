// Package admin serves meshgate's operator endpoints on --metrics-addr:
// /metrics (Prometheus), /healthz (liveness), /readyz (readiness from named
// checks) and whatever other packages mount with Handle (the session mesh
// mounts /status/sessionmesh).
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// CheckFunc reports readiness: nil when ready, an error saying why not. It
// is called on every /readyz request, with that request's context, and must
// be fast and safe for concurrent use.
type CheckFunc func(ctx context.Context) error

// Config configures a Server.
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:9101"; required.
	Addr string
	// Gatherer is served on /metrics; nil means no /metrics endpoint.
	Gatherer prometheus.Gatherer
	// Log receives serve errors; the zero value discards.
	Log logr.Logger
}

// Server is the admin HTTP server. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	shutting atomic.Bool

	mu      sync.Mutex
	checks  map[string]CheckFunc
	srv     *http.Server
	ln      net.Listener
	started bool
	stopped bool
	done    chan struct{} // closed when Serve returns
}

// New builds a Server with /healthz, /readyz and, if cfg.Gatherer is set,
// /metrics mounted. It binds nothing until Start.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, mux: http.NewServeMux(), checks: make(map[string]CheckFunc)}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	return s
}

// Handle mounts h on pattern (net/http ServeMux syntax). It may be called
// before or after Start; it panics on a conflicting pattern like ServeMux.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// AddCheck registers (or replaces) a named readiness check.
func (s *Server) AddCheck(name string, fn CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = fn
}

// SetShuttingDown makes /readyz fail from now on, whatever the checks say:
// the first step of a graceful stop, so load balancers stop sending traffic
// while in-flight requests drain.
func (s *Server) SetShuttingDown() { s.shutting.Store(true) }

// Ready runs every check and returns nil when all pass, else the joined
// reasons ("name: error"), sorted by check name.
func (s *Server) Ready(ctx context.Context) error {
	if s.shutting.Load() {
		return errors.New("shutting down")
	}
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make([]CheckFunc, 0, len(names))
	sort.Strings(names)
	for _, n := range names {
		checks = append(checks, s.checks[n])
	}
	s.mu.Unlock()
	var errs []error
	for i, fn := range checks {
		if err := fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", names[i], err))
		}
	}
	return errors.Join(errs...)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.Ready(r.Context()); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready:\n"+err.Error()+"\n")
		return
	}
	writeText(w, http.StatusOK, "ok\n")
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// ServeHTTP serves the admin mux (for tests and embedding).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Start binds Addr and serves in the background; it returns once bound.
// ctx bounds binding only. Start may be called once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return errors.New("admin: Start called twice or after Shutdown")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.cfg.Addr, err)
	}
	s.started = true
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Log.Error(err, "admin server stopped")
		}
	}(s.srv, s.done)
	return nil
}

// Addr returns the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops the server gracefully, closing remaining connections when
// ctx ends. It is idempotent and may be called before Start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("admin: shutdown: %w", err)
	}
	<-done
	return err
}

// URL returns "http://" + the bound address + path, for tests and logs.
func (s *Server) URL(path string) string {
	a := s.Addr()
	if a == nil {
		return ""
	}
	return "http://" + a.String() + "/" + strings.TrimPrefix(path, "/")
}
