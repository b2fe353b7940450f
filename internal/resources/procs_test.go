package resources

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func TestProcsPolicy(t *testing.T) {
	quiet := func(n int, use float64) []float64 {
		u := make([]float64, n)
		for i := range u {
			u[i] = use
		}
		return u
	}
	cat := func(parts ...[]float64) []float64 {
		var out []float64
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		cur     int
		uses    []float64
		wantEnd int
	}{
		{"idle stays at one", 1, quiet(30, 0), 1},
		{"40 % of one P is still one", 1, []float64{0.4}, 1},
		{"just above 40 % of one P adds one", 1, []float64{0.41}, 2},
		{"a queueing one-P load gets two", 1, []float64{0.55}, 2},
		{"a burst goes to what it needs at once", 1, []float64{1.5}, 4},
		{"never above the ceiling", 1, []float64{9}, 4},
		{"nine quiet intervals keep the Ps", 4, quiet(9, 0.1), 4},
		{"ten quiet intervals remove them", 4, quiet(10, 0.1), 1},
		{"down to the largest need of the quiet run", 4, cat(quiet(4, 0.1), []float64{0.7}, quiet(5, 0.1)), 2},
		{"a busy interval restarts the count", 4, cat(quiet(9, 0.1), []float64{0.8}, quiet(9, 0.1)), 4},
		{"a quarter of one P fewer is not quiet", 2, quiet(20, 0.25), 2},
		{"between the thresholds the Ps stay", 2, quiet(20, 0.35), 2},
		{"just under it is", 2, quiet(10, 0.24), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := procsState{cur: tc.cur, ceiling: 4}
			for _, u := range tc.uses {
				s.cur = s.step(u)
			}
			if s.cur != tc.wantEnd {
				t.Errorf("GOMAXPROCS %d after %v from %d, want %d", s.cur, tc.uses, tc.cur, tc.wantEnd)
			}
		})
	}
}

// fakeProcs records what Procs sets; def is the runtime's default.
type fakeProcs struct {
	mu       sync.Mutex
	def, cur int
	defaults int // SetDefault calls
}

func (f *fakeProcs) Get() int { f.mu.Lock(); defer f.mu.Unlock(); return f.cur }
func (f *fakeProcs) Set(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < 1 {
		panic("GOMAXPROCS < 1")
	}
	f.cur = n
}
func (f *fakeProcs) SetDefault() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.defaults++
	f.cur = f.def
	return f.def
}
func (f *fakeProcs) setDef(n int) { f.mu.Lock(); f.def = n; f.mu.Unlock() }

// procsRig runs Procs on a fake runtime, one interval at a time. Ticks
// and CPU readings go through unbuffered channels, so the rig knows where
// Procs is: once a tick is taken, the previous interval's step is done and
// Procs waits for this interval's CPU reading. Between calls of interval
// a tick is always pending.
type procsRig struct {
	t        *testing.T
	procs    *fakeProcs
	tick     chan time.Time
	cpu      chan cpuReading
	cancel   context.CancelFunc
	done     chan struct{}
	used     time.Duration
	at       time.Time
	pending  time.Duration // wall time of the taken tick's interval; 0: none taken
	nextWall time.Duration // wall time of the next tick's interval (then back to rigInterval)
}

type cpuReading struct {
	d   time.Duration
	err error
}

const rigInterval = 100 * time.Millisecond

// startProcs starts Procs with the runtime's default at def. When Procs
// reads a starting CPU time (env without GOMAXPROCS, def > 1), the rig
// answers it with firstErr and, unless that failed, hands Procs its first
// tick.
func startProcs(t *testing.T, def int, env map[string]string, firstErr error) *procsRig {
	t.Helper()
	r := &procsRig{t: t, procs: &fakeProcs{def: def, cur: def}, tick: make(chan time.Time), cpu: make(chan cpuReading),
		done: make(chan struct{}), at: time.Unix(1000, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	cfg := ProcsConfig{
		Interval: rigInterval,
		CPUTime:  func() (time.Duration, error) { c := <-r.cpu; return c.d, c.err },
		Tick:     func(time.Duration) (<-chan time.Time, func()) { return r.tick, func() {} },
		Procs:    r.procs,
		Env:      func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}
	go func() {
		defer close(r.done)
		Procs(ctx, cfg, logr.Discard())
	}()
	t.Cleanup(r.stop)
	if _, set := env["GOMAXPROCS"]; !set && def > 1 {
		r.cpu <- cpuReading{err: firstErr}
		if firstErr == nil && !r.take() {
			t.Fatal("Procs returned at start")
		}
	}
	return r
}

// take sends the next tick; false if Procs has returned instead.
func (r *procsRig) take() bool {
	wall := rigInterval
	if r.nextWall > 0 {
		wall, r.nextWall = r.nextWall, 0
	}
	r.at = r.at.Add(wall)
	select {
	case r.tick <- r.at:
		r.pending = wall
		return true
	case <-r.done:
		return false
	}
}

// interval ends the pending tick's interval, in which the process used
// use CPUs (err: the reading fails), and returns GOMAXPROCS after Procs
// acted on it, or -1 if Procs returned.
func (r *procsRig) interval(use float64, err error) int {
	r.t.Helper()
	if r.pending == 0 {
		r.t.Fatal("no tick pending")
	}
	r.used += time.Duration(use * float64(r.pending))
	r.cpu <- cpuReading{d: r.used, err: err}
	r.pending = 0
	if !r.take() { // the next interval's tick: this step is done
		return -1
	}
	return r.procs.Get()
}

// stop ends Procs and waits for it.
func (r *procsRig) stop() {
	r.cancel()
	if r.pending > 0 {
		select {
		case r.cpu <- cpuReading{d: r.used}:
		case <-r.done:
		}
		r.pending = 0
	}
	<-r.done
}

func TestProcs(t *testing.T) {
	type step struct {
		use  float64
		want int
	}
	t.Run("starts at one and steps up and down with the load", func(t *testing.T) {
		r := startProcs(t, 4, nil, nil)
		if got := r.procs.Get(); got != 1 {
			t.Fatalf("GOMAXPROCS %d at start, want 1", got)
		}
		steps := []step{{0, 1}, {0.3, 1}, {0.7, 2}, {0.8, 2}, {1.5, 4}, {3.5, 4}}
		for range procsDownAfter - 1 {
			steps = append(steps, step{0.2, 4})
		}
		steps = append(steps, step{0.2, 1})
		for i, s := range steps {
			if got := r.interval(s.use, nil); got != s.want {
				t.Fatalf("interval %d (%.1f CPUs): GOMAXPROCS %d, want %d", i, s.use, got, s.want)
			}
		}
		r.stop()
		if got := r.procs.Get(); got != 4 {
			t.Errorf("GOMAXPROCS %d after Procs returned, want the default 4", got)
		}
	})
	t.Run("the interval is measured between ticks", func(t *testing.T) {
		// A ticker drops ticks when its receiver is late: 0.3 CPUs over
		// 200 ms is 60 ms of CPU, which over a nominal 100 ms would be
		// 0.6 CPUs and a second P.
		r := startProcs(t, 4, nil, nil)
		r.nextWall = 2 * rigInterval
		if got := r.interval(0, nil); got != 1 {
			t.Fatalf("GOMAXPROCS %d, want 1", got)
		}
		if got := r.interval(0.3, nil); got != 1 {
			t.Errorf("GOMAXPROCS %d for 0.3 CPUs over 200 ms, want 1", got)
		}
	})
	t.Run("the ceiling follows the runtime's default", func(t *testing.T) {
		r := startProcs(t, 4, nil, nil)
		r.procs.setDef(2) // the cgroup CPU limit went down
		if got := r.interval(2.9, nil); got != 2 {
			t.Fatalf("GOMAXPROCS %d for 2.9 CPUs with a default of 2, want 2", got)
		}
		for range procsDownAfter {
			r.interval(0, nil)
		}
		if got := r.procs.Get(); got != 1 {
			t.Fatalf("GOMAXPROCS %d after a quiet second, want 1", got)
		}
		r.procs.setDef(8) // and up
		if got := r.interval(5.5, nil); got != 8 {
			t.Fatalf("GOMAXPROCS %d for 5.5 CPUs with a default of 8, want 8", got)
		}
	})
	t.Run("GOMAXPROCS in the environment turns it off", func(t *testing.T) {
		r := startProcs(t, 4, map[string]string{"GOMAXPROCS": "3"}, nil)
		<-r.done
		if r.procs.defaults != 0 || r.procs.Get() != 4 {
			t.Errorf("Procs touched GOMAXPROCS (%d default calls, now %d)", r.procs.defaults, r.procs.Get())
		}
	})
	t.Run("one CPU: nothing to follow", func(t *testing.T) {
		r := startProcs(t, 1, nil, nil)
		<-r.done
		if r.procs.Get() != 1 {
			t.Errorf("GOMAXPROCS %d, want 1", r.procs.Get())
		}
	})
	t.Run("no CPU time at start: the default stays", func(t *testing.T) {
		r := startProcs(t, 4, nil, errors.New("no rusage"))
		<-r.done
		if r.procs.Get() != 4 {
			t.Errorf("GOMAXPROCS %d, want the default 4", r.procs.Get())
		}
	})
	t.Run("a failed reading gives the default back", func(t *testing.T) {
		r := startProcs(t, 4, nil, nil)
		if got := r.interval(0, nil); got != 1 {
			t.Fatalf("GOMAXPROCS %d, want 1", got)
		}
		if got := r.interval(0, errors.New("no rusage")); got != -1 {
			t.Fatalf("Procs went on after a failed reading (GOMAXPROCS %d)", got)
		}
		if got := r.procs.Get(); got != 4 {
			t.Errorf("GOMAXPROCS %d after the failure, want the default 4", got)
		}
	})
}

func TestRuntimeProcs(t *testing.T) {
	var p RuntimeProcs
	def := p.SetDefault()
	t.Cleanup(func() { p.SetDefault() })
	if def != runtime.GOMAXPROCS(0) || def < 1 {
		t.Fatalf("SetDefault returned %d, GOMAXPROCS is %d", def, runtime.GOMAXPROCS(0))
	}
	p.Set(1)
	if got := p.Get(); got != 1 {
		t.Fatalf("Get %d after Set(1)", got)
	}
	if got := p.SetDefault(); got != def {
		t.Fatalf("SetDefault %d, want %d as before", got, def)
	}
}

func TestRusageCPU(t *testing.T) {
	before, err := rusageCPU()
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged this process a clock tick or more:
	// bounded, since any CPU use is charged within a tick or two (4-10 ms).
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for {
		for i := 0; i < 1e6; i++ {
			x += i
		}
		after, err := rusageCPU()
		if err != nil {
			t.Fatal(err)
		}
		if after < before {
			t.Fatalf("CPU time went back: %v then %v", before, after)
		}
		if after > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CPU time charged in 5 s of spinning (%v, %d)", before, x)
		}
	}
}
