package resources

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// Why GOMAXPROCS follows the load. With more Ps than there is work, every
// connection that wakes a replica from idle makes the scheduler wake a
// second thread to look for work to steal, which finds none and parks
// again: futex wake-ups and context switches that cost, per resumed TLS
// 1.3 connection from one client, more than the handshake's own crypto
// (docs/benchmarks.md, "Runtime settings": one P per replica measured
// 1.24-1.32 nginx/meshgate where Go's default measured 1.09-1.16). One P
// is wrong under load, though: a replica that has the CPUs must use them.
// Procs therefore sets GOMAXPROCS to what the process used recently, with
// head room, and never above Go's own default (the CPU count or the cgroup
// CPU limit, which Go keeps following).

// Procs policy constants.
const (
	// ProcsInterval is how often Procs reads the process's CPU time.
	ProcsInterval = 100 * time.Millisecond
	// procsHeadroom is the share of its Ps a replica may keep busy before
	// Procs adds one: need = ceil(use / procsHeadroom). It is low because
	// a P's utilisation does not see queueing: 32 keep-alive clients on
	// one P used 55 % of it and got 7-9 % fewer requests per second than
	// with two Ps, at the same CPU per request (test/perf h1, 10 rounds,
	// side by side; docs/benchmarks.md, section 10), while the round-robin
	// replicas of the handshake scenarios use 15-25 % of a CPU each and
	// keep the one-P saving.
	procsHeadroom = 0.4
	// procsDownShare and procsDownAfter: Procs removes Ps only after
	// procsDownAfter consecutive intervals in which the process used less
	// than procsDownShare of one P fewer, so that a burst's gaps do not
	// take its Ps away. procsDownShare stays below procsHeadroom, so that
	// a use between the two keeps the Ps it has instead of flapping.
	procsDownShare = 0.25
	procsDownAfter = 10
)

// ProcsSetter is the part of the runtime Procs drives; RuntimeProcs is the
// real one.
type ProcsSetter interface {
	// Get returns the current GOMAXPROCS.
	Get() int
	// Set sets GOMAXPROCS to n (n >= 1).
	Set(n int)
	// SetDefault gives GOMAXPROCS back to the runtime (the CPU count or
	// the cgroup limit, which the runtime then keeps following) and
	// returns the value it chose.
	SetDefault() int
}

// RuntimeProcs is the Go runtime's GOMAXPROCS.
type RuntimeProcs struct{}

// Get implements ProcsSetter.
func (RuntimeProcs) Get() int { return runtime.GOMAXPROCS(0) }

// Set implements ProcsSetter.
func (RuntimeProcs) Set(n int) { runtime.GOMAXPROCS(n) }

// SetDefault implements ProcsSetter.
func (RuntimeProcs) SetDefault() int {
	runtime.SetDefaultGOMAXPROCS()
	return runtime.GOMAXPROCS(0)
}

// ProcsConfig adjusts Procs. The zero value is the real process.
type ProcsConfig struct {
	// Interval between CPU readings; 0 means ProcsInterval.
	Interval time.Duration
	// CPUTime returns the user+system CPU time the process has used so
	// far; nil reads getrusage(RUSAGE_SELF).
	CPUTime func() (time.Duration, error)
	// Tick returns a channel that receives once per interval and a
	// function that stops it; nil uses a time.Ticker.
	Tick func(time.Duration) (<-chan time.Time, func())
	// Procs is the GOMAXPROCS Procs sets; nil is RuntimeProcs.
	Procs ProcsSetter
	// Env looks up the environment; nil is os.LookupEnv.
	Env func(string) (string, bool)
}

// procsState is the policy's memory between intervals.
type procsState struct {
	cur     int // GOMAXPROCS now
	ceiling int // the runtime's default, as last read
	low     int // consecutive intervals that allowed fewer Ps
	lowNeed int // the largest need seen in those intervals
}

// step applies one interval's CPU use (in CPUs) and returns the
// GOMAXPROCS wanted next (== s.cur when nothing changes). Raising is
// immediate; lowering waits for procsDownAfter quiet intervals and goes to
// the largest need seen in them.
func (s *procsState) step(use float64) int {
	need := needFor(use, s.ceiling)
	if need > s.cur {
		s.low, s.lowNeed = 0, 0
		return need
	}
	if s.cur > 1 && use < procsDownShare*float64(s.cur-1) {
		s.low++
		s.lowNeed = max(s.lowNeed, need)
		if s.low >= procsDownAfter {
			next := s.lowNeed
			s.low, s.lowNeed = 0, 0
			return next
		}
		return s.cur
	}
	s.low, s.lowNeed = 0, 0
	return s.cur
}

// needFor is the Ps use CPUs need, between 1 and ceiling.
func needFor(use float64, ceiling int) int {
	return max(1, min(int(math.Ceil(use/procsHeadroom)), ceiling))
}

// Procs keeps GOMAXPROCS at what the process's CPU use needs, between 1
// and Go's default, until ctx is done (see the policy above and
// docs/install.md). It starts at one P and reads the CPU time every
// interval: one P more than the recent use at 40 % each is set at once; Ps
// are removed after ten quiet intervals in a row. At the ceiling it hands
// GOMAXPROCS back to the runtime, so a changed cgroup CPU limit is followed
// as without Procs. It does nothing when GOMAXPROCS is set in the
// environment (an operator's choice) or the default is one P already. On
// return (ctx done, or the CPU time could not be read) GOMAXPROCS is the
// runtime's default again. It changes process-wide runtime state: run one,
// from main.
func Procs(ctx context.Context, cfg ProcsConfig, log logr.Logger) {
	if cfg.Interval <= 0 {
		cfg.Interval = ProcsInterval
	}
	if cfg.CPUTime == nil {
		cfg.CPUTime = rusageCPU
	}
	if cfg.Tick == nil {
		cfg.Tick = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	if cfg.Procs == nil {
		cfg.Procs = RuntimeProcs{}
	}
	if cfg.Env == nil {
		cfg.Env = os.LookupEnv
	}
	if v, set := cfg.Env("GOMAXPROCS"); set {
		log.Info("GOMAXPROCS is set: not following the load", "GOMAXPROCS", v)
		return
	}
	st := procsState{ceiling: cfg.Procs.SetDefault()}
	if st.ceiling <= 1 {
		return
	}
	defer cfg.Procs.SetDefault()
	last, err := cfg.CPUTime()
	if err != nil {
		log.Error(err, "GOMAXPROCS stays Go's default")
		return
	}
	st.cur = 1
	cfg.Procs.Set(1)
	log.Info("GOMAXPROCS follows the process's CPU use", "from", 1, "upTo", st.ceiling)
	tick, stop := cfg.Tick(cfg.Interval)
	defer stop()
	// The interval's length is measured between the ticks' own times: a
	// ticker drops ticks when its receiver is late.
	var prev time.Time
	for {
		var at time.Time
		select {
		case <-ctx.Done():
			return
		case at = <-tick:
		}
		now, err := cfg.CPUTime()
		if err != nil {
			log.Error(err, "GOMAXPROCS goes back to Go's default")
			return
		}
		wall := at.Sub(prev)
		if prev.IsZero() || wall <= 0 {
			wall = cfg.Interval
		}
		prev = at
		use := float64(now-last) / float64(wall)
		last = now
		next := st.step(use)
		if next == st.cur {
			continue
		}
		// Each change reads the runtime's default afresh (the cgroup
		// limit may have moved) and hands the value back to the runtime
		// when the ceiling is wanted.
		st.ceiling = cfg.Procs.SetDefault()
		if next > st.cur {
			next = max(next, needFor(use, st.ceiling)) // a raised ceiling counts at once
		}
		if next < st.ceiling {
			cfg.Procs.Set(next)
		} else {
			next = st.ceiling
		}
		log.V(1).Info("GOMAXPROCS", "from", st.cur, "to", next, "cpuUse", fmt.Sprintf("%.2f", use))
		st.cur = next
	}
}

// rusageCPU returns the process's user+system CPU time.
func rusageCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("resources: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
