// Package resources fits the Go runtime to the container a replica runs
// in, once at start, and says what it chose:
//
//   - GOMAXPROCS: Go (since 1.25) already follows the cgroup CPU limit,
//     rounded up and never below 2, and re-reads it when it changes; the
//     GOMAXPROCS variable overrides it (the chart sets it from the pod's CPU
//     request: see docs/benchmarks.md, "Runtime settings"). Apply changes
//     nothing and reports the value; Procs (procs.go), run beside the data
//     plane, keeps it between 1 and that default by the process's CPU use.
//   - GOMEMLIMIT: Go does not read the memory limit. Apply sets the soft
//     limit to MemoryRatio of the cgroup memory limit (v1 or v2, via
//     github.com/KimMachineGun/automemlimit), leaving the rest for what the
//     Go heap limit does not count (the kernel's socket buffers, charged to
//     the same cgroup). GOMEMLIMIT in the environment wins; AUTOMEMLIMIT
//     ("off" or a ratio) adjusts it.
//   - GOGC: GCPercent unless GOGC is set.
//   - sysmon: KeepSysmonAwake, called first in main, re-executes the
//     binary with GODEBUG's schedtrace on so that the runtime's system
//     monitor stops deep-sleeping between connections (sysmon.go says why
//     and what it costs); GODEBUG=schedtrace=0 keeps Go's default.
package resources

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

// DefaultGCPercent is the GC target when GOGC is not set, chosen by
// measurement (docs/benchmarks.md, "Runtime settings").
const DefaultGCPercent = 200

// DefaultMemoryRatio is the share of the cgroup memory limit given to
// GOMEMLIMIT.
const DefaultMemoryRatio = 0.9

// Config adjusts Apply. The zero value is the default.
type Config struct {
	// GCPercent is the GC target used when GOGC is unset; 0 means
	// DefaultGCPercent, a negative value turns the collector off (only
	// sensible with a memory limit).
	GCPercent int
	// MemoryRatio is GOMEMLIMIT's share of the memory limit, in (0, 1];
	// 0 means DefaultMemoryRatio.
	MemoryRatio float64
	// MemoryLimit reports the container's memory limit; nil reads the
	// cgroup. Tests replace it.
	MemoryLimit func() (uint64, error)
}

// Settings are the runtime settings in force after Apply.
type Settings struct {
	GOMAXPROCS  int
	GCPercent   int   // negative: collector off
	MemoryLimit int64 // bytes; math.MaxInt64 when there is none
	SysmonAwake bool  // GODEBUG schedtrace on (KeepSysmonAwake)
}

// Apply sets GOMEMLIMIT and GOGC as the package doc says and logs the
// settings in force once. It changes process-wide runtime state: call it
// once, from main.
func Apply(cfg Config, log logr.Logger) (Settings, error) {
	if cfg.GCPercent == 0 {
		cfg.GCPercent = DefaultGCPercent
	}
	if cfg.MemoryRatio == 0 {
		cfg.MemoryRatio = DefaultMemoryRatio
	}
	if cfg.MemoryLimit == nil {
		cfg.MemoryLimit = memlimit.FromCgroup
	}
	gcSource := "GOGC"
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cfg.GCPercent)
		gcSource = "default"
	}
	var err error
	memSource := "GOMEMLIMIT"
	if os.Getenv("GOMEMLIMIT") == "" {
		memSource = "cgroup"
		err = setMemoryLimit(cfg)
	}
	s := Settings{GOMAXPROCS: runtime.GOMAXPROCS(0), GCPercent: gcPercent(), MemoryLimit: debug.SetMemoryLimit(-1), SysmonAwake: SysmonAwake()}
	procsSource := "Go (CPUs or cgroup CPU limit)"
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		procsSource = "GOMAXPROCS"
	}
	limit := "none"
	if s.MemoryLimit != math.MaxInt64 {
		limit = fmt.Sprintf("%d MiB", s.MemoryLimit>>20)
	}
	log.Info("runtime settings", "gomaxprocs", s.GOMAXPROCS, "gomaxprocsFrom", procsSource,
		"gogc", s.GCPercent, "gogcFrom", gcSource, "gomemlimit", limit, "gomemlimitFrom", memSource, "sysmonAwake", s.SysmonAwake)
	return s, err
}

// setMemoryLimit applies MemoryRatio of the container's limit, if any
// (AUTOMEMLIMIT=off or a ratio in the environment override it).
func setMemoryLimit(cfg Config) error {
	provider := func() (uint64, error) {
		n, err := cfg.MemoryLimit()
		if errors.Is(err, memlimit.ErrNoCgroup) || errors.Is(err, memlimit.ErrCgroupsNotSupported) {
			return 0, memlimit.ErrNoLimit // not in a container: no limit to follow
		}
		return n, err
	}
	_, err := memlimit.Set(memlimit.WithProvider(provider), memlimit.WithRatio(cfg.MemoryRatio),
		memlimit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return fmt.Errorf("resources: GOMEMLIMIT from the memory limit: %w", err)
	}
	return nil
}

// gcPercent reads the GC target without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}
