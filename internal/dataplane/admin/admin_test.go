package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshgate_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)

	s := New(Config{Addr: "127.0.0.1:0", Gatherer: reg})
	var meshReady atomic.Bool
	s.AddCheck("table", func(context.Context) error { return nil })
	s.AddCheck("mesh", func(context.Context) error {
		if meshReady.Load() {
			return nil
		}
		return errors.New("no peers yet")
	})
	s.Handle("GET /status/sessionmesh", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"nodes":1}`)
	}))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())

	tests := []struct {
		name       string
		path       string
		setup      func()
		wantStatus int
		wantBody   string
	}{
		{"healthz", "/healthz", nil, 200, "ok"},
		{"metrics", "/metrics", nil, 200, "meshgate_test_total 3"},
		{"mounted", "/status/sessionmesh", nil, 200, `{"nodes":1}`},
		{"not ready", "/readyz", nil, 503, "mesh: no peers yet"},
		{"ready", "/readyz", func() { meshReady.Store(true) }, 200, "ok"},
		{"shutting down", "/readyz", func() { s.SetShuttingDown() }, 503, "shutting down"},
		{"healthz while shutting down", "/healthz", nil, 200, "ok"},
		{"unknown", "/nope", nil, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			code, body := get(t, s.URL(tc.path))
			if code != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
}

func TestAdminStartShutdown(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0"})
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Start: %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}

	s = New(Config{Addr: "127.0.0.1:0"})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	url := s.URL("/healthz")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 2 {
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("admin still serving after Shutdown")
	}
	if err := New(Config{Addr: "256.0.0.1:0"}).Start(ctx); err == nil {
		t.Fatal("Start on a bad address succeeded")
	}
}
