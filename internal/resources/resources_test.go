package resources

import (
	"errors"
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

// restore puts the process-wide GC settings back after a test.
func restore(t *testing.T) {
	gc, mem := gcPercent(), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(mem)
	})
}

func limit(n uint64, err error) func() (uint64, error) {
	return func() (uint64, error) { return n, err }
}

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		cfg      Config
		wantGC   int
		wantMem  int64
		wantFail bool
	}{
		{"defaults in a 1000 MiB container", nil, Config{MemoryLimit: limit(1000<<20, nil)}, DefaultGCPercent, 900 << 20, false},
		{"own ratio and GC target", nil, Config{GCPercent: 150, MemoryRatio: 0.5, MemoryLimit: limit(1000<<20, nil)}, 150, 500 << 20, false},
		{"GOGC and GOMEMLIMIT win", map[string]string{"GOGC": "300", "GOMEMLIMIT": "123MiB"}, Config{MemoryLimit: limit(1000<<20, nil)}, -2, -2, false},
		{"AUTOMEMLIMIT=off", map[string]string{"AUTOMEMLIMIT": "off"}, Config{MemoryLimit: limit(1000<<20, nil)}, DefaultGCPercent, -2, false},
		{"no limit", nil, Config{MemoryLimit: limit(0, memlimit.ErrNoLimit)}, DefaultGCPercent, math.MaxInt64, false},
		{"not in a cgroup", nil, Config{MemoryLimit: limit(0, memlimit.ErrNoCgroup)}, DefaultGCPercent, math.MaxInt64, false},
		{"unreadable limit", nil, Config{MemoryLimit: limit(0, errors.New("permission denied"))}, DefaultGCPercent, -2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restore(t)
			for _, k := range []string{"GOGC", "GOMEMLIMIT", "AUTOMEMLIMIT", "GOMAXPROCS"} {
				t.Setenv(k, tc.env[k])
			}
			// t.Setenv with "" still counts as set for GOGC: unset the
			// ones the case does not name.
			unsetEmpty(t, tc.env)
			debug.SetGCPercent(77)
			debug.SetMemoryLimit(math.MaxInt64 - 1)
			s, err := Apply(tc.cfg, logr.Discard())
			if (err != nil) != tc.wantFail {
				t.Fatalf("err = %v, want failure %v", err, tc.wantFail)
			}
			wantGC, wantMem := tc.wantGC, tc.wantMem
			if wantGC == -2 {
				wantGC = 77 // untouched
			}
			if wantMem == -2 {
				wantMem = math.MaxInt64 - 1 // untouched
			}
			if s.GCPercent != wantGC || gcPercent() != wantGC {
				t.Errorf("GC percent %d (runtime %d), want %d", s.GCPercent, gcPercent(), wantGC)
			}
			if s.MemoryLimit != wantMem || debug.SetMemoryLimit(-1) != wantMem {
				t.Errorf("memory limit %d, want %d", s.MemoryLimit, wantMem)
			}
			if s.GOMAXPROCS < 1 {
				t.Errorf("GOMAXPROCS %d", s.GOMAXPROCS)
			}
		})
	}
}

func unsetEmpty(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "AUTOMEMLIMIT", "GOMAXPROCS"} {
		if _, ok := env[k]; !ok {
			if err := os.Unsetenv(k); err != nil {
				t.Fatal(err)
			}
		}
	}
}
