package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable clock shared by the limiters of a test.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t0 time.Time) *clock   { c := &clock{}; c.ns.Store(t0.UnixNano()); return c }
func start() time.Time               { return time.Unix(1_800_000_000, 0) } // on a window boundary
var sharedKey = []byte("0123456789abcdef")

func newLimiter(t *testing.T, c *clock, maxKeys int) *Limiter {
	t.Helper()
	l, err := New(Config{Key: sharedKey, Now: c.now, MaxKeys: maxKeys})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func limit(t *testing.T, l *Limiter, rate uint32, w time.Duration) *Limit {
	t.Helper()
	lm, err := l.Limit(Spec{Name: "ns/ing#rps", Rate: rate, Window: w})
	if err != nil {
		t.Fatal(err)
	}
	return lm
}

// One node under a steady load of 1,000 rps admits exactly the rate in
// every window after the first (the sliding estimate spreads admissions
// evenly), and exactly the rate in the first.
func TestSingleNodeSteadyRate(t *testing.T) {
	c := newClock(start())
	l := newLimiter(t, c, 0)
	lm := limit(t, l, 300, time.Second)
	for sec := range 5 {
		admitted := 0
		for range 1000 {
			if lm.Allow([]byte("client")).OK {
				admitted++
			}
			c.add(time.Millisecond)
		}
		// The estimate is prev × (1 − e) + cur < 300 at each request: with
		// prev = 300 the window ends at cur = 300 (± the one request per
		// millisecond granularity of the clock).
		if admitted < 299 || admitted > 301 {
			t.Errorf("second %d: admitted %d, want 300 ± 1", sec, admitted)
		}
	}
	if st := lm.Stats(); st.Admitted+st.Rejected != 5000 {
		t.Errorf("stats %+v do not add up to 5000 decisions", st)
	}
}

// Keys are limited separately.
func TestKeysAreSeparate(t *testing.T) {
	c := newClock(start())
	lm := limit(t, newLimiter(t, c, 0), 2, time.Second)
	for _, k := range []string{"a", "a", "b", "b"} {
		if !lm.AllowString(k).OK {
			t.Fatalf("request of %s refused under the rate", k)
		}
	}
	if lm.AllowString("a").OK || lm.AllowString("b").OK {
		t.Fatal("third request within the window admitted")
	}
}

// cluster runs n limiters that exchange reports every interval of the
// shared clock, under a load spread round robin over them.
type cluster struct {
	c     *clock
	ls    []*Limiter
	lims  []*Limit
	links [][]bool // links[i][j]: i's reports reach j
}

func newCluster(t *testing.T, n int, rate uint32) *cluster {
	cl := &cluster{c: newClock(start())}
	for i := range n {
		l := newLimiter(t, cl.c, 0)
		cl.ls = append(cl.ls, l)
		cl.lims = append(cl.lims, limit(t, l, rate, time.Second))
		cl.links = append(cl.links, make([]bool, n))
		for j := range n {
			cl.links[i][j] = i != j
		}
	}
	return cl
}

func (cl *cluster) exchange() {
	for i, l := range cl.ls {
		r := l.Report()
		for j, m := range cl.ls {
			if cl.links[i][j] {
				m.Merge(fmt.Sprint("node", i), r)
			}
		}
	}
}

// run sends rps requests a second of key, round robin, for d, exchanging
// reports every interval, and returns what each node admitted.
func (cl *cluster) run(key string, rps int, d, interval time.Duration) []int {
	got := make([]int, len(cl.ls))
	step := time.Second / time.Duration(rps)
	next := interval
	for i, el := 0, time.Duration(0); el < d; i, el = i+1, el+step {
		n := i % len(cl.ls)
		if cl.lims[n].AllowString(key).OK {
			got[n]++
		}
		cl.c.add(step)
		if el+step >= next {
			cl.exchange()
			next += interval
		}
	}
	return got
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// Three nodes exchanging reports every 25 ms admit the cluster-wide rate,
// not three times it. Bound: what the other two admitted during the last
// report interval is not yet known to a node, at most (N−1)/N × rate ×
// interval / window = 2/3 × 300 × 0.025 = 5 requests a window; and for the
// first interval of a window the peers' final counts of the previous one
// are as stale, which lowers its weighted term by as much again: 10 over
// the rate at most. Nothing makes a node admit less than the rate while
// the load exceeds it.
func TestClusterAdmitsTheClusterRate(t *testing.T) {
	cl := newCluster(t, 3, 300)
	cl.run("client", 1000, time.Second, 25*time.Millisecond) // the first window
	for sec := range 4 {
		got := cl.run("client", 1000, time.Second, 25*time.Millisecond)
		if s := sum(got); s < 299 || s > 310 {
			t.Errorf("second %d: the cluster admitted %d (%v), want 300..310", sec, s, got)
		}
	}
}

// A burst on an idle key converges: once the cluster has admitted the
// rate, every node refuses within one report interval.
func TestBurstConverges(t *testing.T) {
	cl := newCluster(t, 3, 300)
	step := 100 * time.Microsecond // 10,000 rps
	admitted, last := 0, time.Duration(0)
	var reached time.Duration = -1
	for el := time.Duration(0); el < 500*time.Millisecond; el += step {
		if cl.lims[int(el/step)%3].AllowString("burst").OK {
			admitted++
			last = el
			if admitted == 300 {
				reached = el
			}
		}
		cl.c.add(step)
		if (el+step)%(25*time.Millisecond) == 0 {
			cl.exchange()
		}
	}
	if reached < 0 {
		t.Fatalf("admitted only %d", admitted)
	}
	if conv := last - reached; conv > 25*time.Millisecond {
		t.Errorf("nodes admitted until %v after the cluster reached the rate, want within one 25ms interval", conv)
	}
	// Each node alone admits up to the rate before it hears the others.
	if admitted > 3*300 || admitted < 300 {
		t.Errorf("the burst admitted %d", admitted)
	}
	t.Logf("burst: %d admitted, converged %v after the rate was reached", admitted, last-reached)
}

// A partition: each side enforces the rate on the counts it still gets,
// so two sides admit up to twice the rate; healed, the cluster is back to
// the rate.
func TestPartitionEachSideEnforces(t *testing.T) {
	cl := newCluster(t, 3, 300)
	cl.run("client", 1000, 2*time.Second, 25*time.Millisecond)
	// {0} | {1, 2}
	for i := range 3 {
		for j := range 3 {
			cl.links[i][j] = i != j && (i == 0) == (j == 0)
		}
	}
	cl.run("client", 1000, 2*time.Second, 25*time.Millisecond) // old counts age out
	got := cl.run("client", 1000, time.Second, 25*time.Millisecond)
	// Node 0 sees a third of the load (333 rps > 300) and admits the rate
	// alone; nodes 1 and 2 admit the rate between them.
	if got[0] < 295 || got[0] > 305 || got[1]+got[2] < 295 || got[1]+got[2] > 310 {
		t.Errorf("partitioned: %v, want each side at the rate", got)
	}
	for i := range 3 {
		for j := range 3 {
			cl.links[i][j] = i != j
		}
	}
	cl.run("client", 1000, 2*time.Second, 25*time.Millisecond)
	if s := sum(cl.run("client", 1000, time.Second, 25*time.Millisecond)); s < 299 || s > 310 {
		t.Errorf("healed: the cluster admitted %d, want 300..310", s)
	}
}

// A dead peer's counts weigh in for the window they belong to and the
// next (the sliding estimate), then not at all; Sweep then forgets the key.
func TestDeadPeerCountsExpire(t *testing.T) {
	c := newClock(start())
	a, b := newLimiter(t, c, 0), newLimiter(t, c, 0)
	la, lb := limit(t, a, 100, time.Second), limit(t, b, 100, time.Second)
	for range 100 {
		if !lb.AllowString("k").OK {
			t.Fatal("refused under the rate")
		}
	}
	a.Merge("b", b.Report()) // b's last report; then b dies
	if la.AllowString("k").OK {
		t.Fatal("a admitted over b's reported 100 in the same window")
	}
	c.add(1500 * time.Millisecond) // half of the next window: b's 100 weigh 50
	n := 0
	for la.AllowString("k").OK {
		n++
	}
	if n != 50 {
		t.Errorf("half a window later a admitted %d, want 50", n)
	}
	c.add(time.Second) // at 2.5s: b's window (0s) is two back, a's own (1s) the previous one
	a.Sweep()
	if got := a.Stats().Keys; got != 1 {
		t.Errorf("keys after the first sweep: %d, want 1 (a's own counts weigh in still)", got)
	}
	c.add(time.Second)
	a.Sweep()
	if got := a.Stats().Keys; got != 0 {
		t.Errorf("keys after every count aged out: %d, want 0", got)
	}
	if !la.AllowString("k").OK {
		t.Error("refused after every count aged out")
	}
}

// Memory is bounded: a million keys go into room for 1,000, and every key
// beyond the cap costs one counted eviction.
func TestTrackedKeysBounded(t *testing.T) {
	c := newClock(start())
	l := newLimiter(t, c, 1000)
	lm := limit(t, l, 10, time.Second)
	const n = 20_000
	for i := range n {
		lm.AllowString(fmt.Sprint("client-", i))
		c.add(time.Microsecond)
	}
	st := l.Stats()
	// The cap may be passed by one per shard that is empty when full.
	if st.Keys > 1000+shards {
		t.Errorf("%d keys tracked, cap 1000", st.Keys)
	}
	if st.Evictions != uint64(n-st.Keys) {
		t.Errorf("%d evictions, want %d", st.Evictions, n-st.Keys)
	}
	if ls := lm.Stats(); ls.TrackedKeys != st.Keys || ls.EvictedKeys != int64(st.Evictions) {
		t.Errorf("limit stats %+v disagree with %+v", ls, st)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		cur, prev, e uint64
		want         time.Duration
	}{
		{cur: 300, prev: 0, e: 500, want: time.Second},       // next window, cur weighs 300 × (1 − d'): d' > 0
		{cur: 600, prev: 0, e: 0, want: 2 * time.Second},     // 1s to the end, then cur must halve: 0.5s
		{cur: 0, prev: 300, e: 0, want: time.Second},         // prev decays below 300 at once
		{cur: 150, prev: 600, e: 0, want: time.Second},       // 600 × (1 − d) + 150 < 300: d > 0.75
		{cur: 299, prev: 10000, e: 0, want: time.Second},     // d > 1 − 0.0001
		{cur: 900, prev: 900, e: 100, want: 2 * time.Second}, // 0.9s + 0.667s, rounded up
	} {
		if got := retryAfter(tc.cur, tc.prev, 300, tc.e, 1000); got != tc.want {
			t.Errorf("retryAfter(cur %d, prev %d, e %d) = %v, want %v", tc.cur, tc.prev, tc.e, got, tc.want)
		}
	}
}

// Limits with the same name share counts; a new rate applies at once.
func TestLimitUpdate(t *testing.T) {
	c := newClock(start())
	l := newLimiter(t, c, 0)
	a := limit(t, l, 1, time.Second)
	if !a.AllowString("k").OK || a.AllowString("k").OK {
		t.Fatal("rate 1 not enforced")
	}
	b := limit(t, l, 3, time.Second)
	if a != b {
		t.Fatal("the same name gave another limit")
	}
	if !b.AllowString("k").OK || !b.AllowString("k").OK || b.AllowString("k").OK {
		t.Fatal("rate 3 after the update not enforced on the kept count")
	}
	if _, err := l.Limit(Spec{Name: "x", Rate: 0, Window: time.Second}); err == nil {
		t.Error("a zero rate was accepted")
	}
}

// Counts of a limit the node does not have are dropped and counted.
func TestMergeUnknownLimit(t *testing.T) {
	c := newClock(start())
	l := newLimiter(t, c, 0)
	l.Merge("p", []Count{{Limit: 7, Key: 1, Window: start().UnixMilli(), Count: 3}})
	if st := l.Stats(); st.Unknown != 1 || st.Keys != 0 {
		t.Errorf("stats %+v, want one unknown and no key", st)
	}
}

// Concurrent requests, reports, merges and sweeps (run with -race): no
// request is lost from the counts.
func TestConcurrentUse(t *testing.T) {
	c := newClock(start())
	a, b := newLimiter(t, c, 500), newLimiter(t, c, 500)
	la, _ := a.Limit(Spec{Name: "n", Rate: 1 << 30, Window: time.Second})
	b.Limit(Spec{Name: "n", Rate: 1 << 30, Window: time.Second})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				la.AllowString(fmt.Sprint(g, "-", i%700))
			}
		})
	}
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				b.Merge("a", a.Report())
				a.Sweep()
			}
		}
	})
	wg.Wait()
	close(stop)
	bg.Wait()
	if st := la.Stats(); st.Admitted != 8000 {
		t.Errorf("admitted %d of 8000 under a huge rate", st.Admitted)
	}
}

// Remove frees a limit's keys at once (other limits keep theirs), counts
// them, and makes a peer's later counts for it unknown; a limit of the
// same name made again starts from nothing.
func TestRemove(t *testing.T) {
	c := newClock(start())
	l := newLimiter(t, c, 0)
	gone := limit(t, l, 5, time.Second)
	kept, err := l.Limit(Spec{Name: "ns/other#rps", Rate: 5, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		gone.AllowString(fmt.Sprint("client", i))
	}
	kept.AllowString("x")
	if n := l.Remove("ns/ing#rps"); n != 100 {
		t.Fatalf("Remove freed %d keys, want 100", n)
	}
	if n := l.Remove("ns/ing#rps"); n != 0 {
		t.Fatalf("a second Remove freed %d", n)
	}
	st := l.Stats()
	if st.Keys != 1 || st.RemovedLimits != 1 || st.RemovedKeys != 100 || kept.Stats().TrackedKeys != 1 {
		t.Fatalf("stats %+v, kept %+v", st, kept.Stats())
	}
	if cs := l.Report(); len(cs) != 1 || cs[0].Limit != kept.id {
		t.Fatalf("report after Remove %+v, want only the kept limit's count", cs)
	}
	l.Merge("p", []Count{{Limit: gone.id, Key: 1, Window: start().UnixMilli(), Count: 3}})
	if st := l.Stats(); st.Unknown != 1 || st.Keys != 1 {
		t.Fatalf("peer count of a removed limit: %+v", st)
	}
	again := limit(t, l, 5, time.Second)
	for i := range 5 {
		if !again.AllowString("client0").OK {
			t.Fatalf("request %d of a re-made limit rejected", i)
		}
	}
}

// Pending tells a reporter when there is something to report: a value after
// the first admitted request since the last Report, one only however many
// follow, none for rejected requests; after a Report the next admitted
// request signals again. (The channel is filled synchronously by Allow, so
// its state right after a call is the contract, not a race.)
func TestPending(t *testing.T) {
	c := newClock(start())
	l := newLimiter(t, c, 0)
	lm := limit(t, l, 2, time.Second)
	pending := func() bool {
		select {
		case <-l.Pending():
			return true
		default:
			return false
		}
	}
	if pending() {
		t.Fatal("pending before any request")
	}
	for range 2 {
		if !lm.AllowString("a").OK {
			t.Fatal("request within the rate refused")
		}
	}
	lm.AllowString("b")
	if !pending() {
		t.Fatal("no pending value after admitted requests")
	}
	if pending() {
		t.Fatal("more than one pending value before a Report")
	}
	if got := len(l.Report()); got != 2 {
		t.Fatalf("Report: %d counts, want 2 (keys a and b)", got)
	}
	if lm.AllowString("a").OK {
		t.Fatal("request over the rate admitted")
	}
	if pending() {
		t.Fatal("pending after a rejected request only")
	}
	c.add(2 * time.Second) // a later window: a is admitted again
	if !lm.AllowString("a").OK {
		t.Fatal("request in a new window refused")
	}
	if !pending() {
		t.Fatal("no pending value after the Report and a new admitted request")
	}
}
