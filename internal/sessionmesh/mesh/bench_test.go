package mesh

import (
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
)

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPair starts two connected meshes; b's inserts are observed.
func benchPair(b *testing.B, mut func(*Config)) (*testMesh, *testMesh) {
	ca, _ := pki.NewCA("bench")
	pa, pb := make(chanPeers, 1), make(chanPeers, 1)
	prod := func(c *Config) { // production timers: no false dead-peer verdicts
		c.HeartbeatInterval, c.DeadAfter = 500*time.Millisecond, 3*time.Second
		if mut != nil {
			mut(c)
		}
	}
	x := startMesh(b, ca, "a", pa, prod)
	y := startMesh(b, ca, "b", pb, prod)
	pa <- []string{y.Addr()}
	pb <- []string{x.Addr()}
	waitFor(b, "online", func() bool { return len(x.OnlineNames()) == 1 && len(y.OnlineNames()) == 1 })
	return x, y
}

// BenchmarkInsertThroughput measures records per second one node stores and
// replicates to a peer that stores them too, with ~600-byte states (a
// TLS 1.3 session with a 2-certificate chain is 500–1500 bytes). Target:
// ≥ 200k inserts/s.
func BenchmarkInsertThroughput(b *testing.B) {
	// got counts records stored by the peer; progress is signalled (never
	// blocking) at each, so the producer waits on the peer's progress, not
	// on a clock.
	var got atomic.Uint64
	progress := make(chan struct{}, 1)
	x, _ := benchPair(b, func(c *Config) {
		c.QueueRecords = 1 << 16
		if c.NodeName == "b" {
			c.OnReplicated = func(time.Duration) {
				got.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}
	})
	// replicated waits until the peer has stored n records; false after
	// timeout without it.
	replicated := func(n uint64, timeout time.Duration) bool {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		for got.Load() < n {
			select {
			case <-progress:
			case <-timer.C:
				return got.Load() >= n
			}
		}
		return true
	}
	state := make([]byte, 600)
	var i uint64
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		r := record(i)
		r.State = state
		x.h.s.Put(r, time.Now())
		x.Insert(r)
		i++
		// Stay under the queue bound (QueueRecords, 1<<16): measure
		// throughput, not drops. Once the peer has stored all but 1<<15,
		// at most 1<<15 are queued or on the wire.
		if i%4096 == 0 && i > 1<<15 && !replicated(i-1<<15, 20*time.Second) {
			b.Fatalf("replication stalled at %d of %d; status %+v", got.Load(), i, x.Status())
		}
	}
	if !replicated(i, 20*time.Second) {
		b.Fatalf("replicated %d of %d; status %+v", got.Load(), i, x.Status())
	}
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(i)/el.Seconds(), "inserts/s")
	// Both nodes run in this process: CPU per insert covers sender and
	// receiver; wall-clock rates on a shared machine mostly measure others.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(i), "cpu-ns/insert")
	if d := x.Status().Drops; d != 0 {
		b.Fatalf("%d drops", d)
	}
}

// BenchmarkReplicationLatency paces inserts at 10k/s for 1 s per iteration
// and reports the insert-to-visible latency on the peer (p50, p99, max).
// Target: p99 < 1 ms.
func BenchmarkReplicationLatency(b *testing.B) {
	var mu sync.Mutex
	var lat []time.Duration
	x, _ := benchPair(b, func(c *Config) {
		if c.NodeName == "b" {
			c.OnReplicated = func(d time.Duration) {
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}
	})
	const rate = 10_000
	var i uint64
	for b.Loop() {
		start := time.Now()
		for n := 0; n < rate; n++ {
			// Pace: record n is due at start + n/rate.
			if d := time.Until(start.Add(time.Duration(n) * time.Second / rate)); d > 0 {
				time.Sleep(d)
			}
			r := record(i)
			r.Created = time.Now().UnixNano()
			x.Insert(r)
			i++
		}
	}
	waitFor(b, "all replicated", func() bool { mu.Lock(); defer mu.Unlock(); return uint64(len(lat)) >= i })
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(q(1), "max-µs")
}
