// Package breakdown attributes the CPU samples of pprof profiles to the
// buckets meshgate's per-connection budget is judged by (crypto by
// primitive, TLS state machine, session store, mesh replication, HTTP,
// upstream, syscalls, scheduler, allocation, GC), so that a change is
// judged by which bucket it emptied. test/bench writes the table into
// docs/benchmarks.md; `go run ./test/perf breakdown` prints it for saved
// profiles.
//
// Every sample goes to exactly one bucket: the first rule, in Rules order,
// one of whose substrings occurs in the name of any function on the
// sample's stack (inlined frames included). The order is the contract:
// GC and the mesh's own goroutines first (whatever they call), then the
// scheduler, syscalls and allocation (whoever calls them), then crypto by
// primitive, then the component whose code ran. So "syscalls: write" holds
// every write(2) of a client connection, TLS or HTTP, but not the mesh
// writer's, which is in "mesh: replicate out".
package breakdown

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/pprof/profile"
)

// Rule sends a sample to Bucket when one of Match is a substring of a
// function name on its stack; a Match entry starting with "=" must equal
// the name instead (for runtime functions whose names prefix others, such
// as runtime.netpoll and runtime.netpollopen).
type Rule struct {
	Bucket string
	Match  []string
}

// Other is the bucket of samples no rule matches.
const Other = "other"

// mg prefixes meshgate's own packages.
const mg = "github.com/meshgate/meshgate/internal/"

// Rules is the bucket map, in precedence order.
var Rules = []Rule{
	{"GC (mark, sweep, assists, write barriers)", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep",
		"runtime.bgscavenge", "runtime.gcStart", "runtime.gcMarkDone", "runtime.gcMarkTermination", "runtime.markroot",
		"runtime.gcDrain", "runtime.sweepone", "runtime.deductSweepCredit", "runtime.wbBufFlush", "runtime.gcWriteBarrier",
		"runtime.scanobject", "runtime.(*gcWork)", "runtime.(*mheap).reclaim", "runtime.(*sweepLocked)"}},
	{"mesh: point lookup served (issuer)", []string{mg + "sessionmesh.(*handler).Lookup", mg + "sessionmesh/mesh.(*conn).answerLookup"}},
	{"mesh: replicate out (issuer's writer)", []string{mg + "sessionmesh/mesh.(*conn).writeLoop", mg + "sessionmesh/mesh.(*conn).flushPeer",
		mg + "sessionmesh/mesh.(*writer)"}},
	{"mesh: replicate in (peers' reader)", []string{mg + "sessionmesh/mesh.(*conn).readLoop", mg + "sessionmesh/mesh.(*reader)"}},
	{"scheduler, futex, netpoll, goroutines", []string{"runtime.schedule", "runtime.findRunnable", "runtime.park_m",
		"runtime.futex", "runtime.notesleep", "runtime.notewakeup", "runtime.stopm", "runtime.startm", "runtime.wakep",
		"=runtime.netpoll", "runtime.gopark", "runtime.goready", "=runtime.ready", "runtime.runqgrab", "runtime.stealWork",
		"runtime.usleep", "runtime.osyield", "runtime.handoffp", "runtime.exitsyscall0", "runtime.sysmon", "runtime.retake",
		"runtime.newproc", "runtime.goexit0", "runtime.gfget", "runtime.gfput", "runtime.mstart", "runtime.resetspinning",
		"runtime.checkTimers", "runtime.selectgo", "runtime.chansend", "runtime.chanrecv", "runtime.semacquire",
		"runtime.semrelease", "sync.(*Mutex).lockSlow", "sync.(*Mutex).unlockSlow", "runtime.lock2", "runtime.unlock2"}},
	{"syscalls: read", []string{"syscall.read", "syscall.Read", "syscall.recvfrom"}},
	{"syscalls: write", []string{"syscall.write", "syscall.Write", "syscall.writev", "syscall.sendto", "syscall.sendmsg"}},
	{"syscalls: accept, setsockopt, epoll_ctl, close", []string{"syscall.accept", "syscall.Accept", "syscall.setsockopt",
		"syscall.Setsockopt", "syscall.Close", "syscall.Getsockname", "syscall.getsockname", "syscall.getpeername",
		"syscall.Getpeername", "runtime.netpollopen", "runtime.netpollclose", "internal/runtime/syscall.EpollCtl",
		"internal/poll.(*FD).destroy", "syscall.Shutdown"}},
	{"syscalls: other", []string{"syscall.Syscall", "syscall.RawSyscall", "internal/runtime/syscall.Syscall6", "runtime.entersyscall",
		"runtime.exitsyscall", "runtime.write1", "=runtime.read"}},
	{"allocation (mallocgc)", []string{"runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice",
		"runtime.makemap", "runtime.(*mcache).refill", "runtime.(*mcentral)", "runtime.(*mheap).alloc"}},
	{"crypto: ECDSA", []string{"crypto/ecdsa.", "crypto/internal/fips140/ecdsa."}},
	{"crypto: RSA", []string{"crypto/rsa.", "crypto/internal/fips140/rsa.", "crypto/internal/fips140/bigmod."}},
	{"crypto: ML-KEM-768", []string{"crypto/mlkem.", "crypto/internal/fips140/mlkem."}},
	{"crypto: X25519", []string{"crypto/internal/fips140/edwards25519", "crypto/ecdh.x25519", "crypto/ecdh.(*x25519"}},
	{"crypto: P-256 / P-384 ECDH", []string{"crypto/internal/fips140/nistec", "crypto/internal/fips140/ecdh.", "crypto/ecdh.(*nistCurve"}},
	{"crypto: AES-GCM / ChaCha20-Poly1305", []string{"crypto/internal/fips140/aes", "crypto/aes.", "crypto/cipher.",
		"chacha20", "poly1305"}},
	{"crypto: SHA-2 / HMAC / HKDF", []string{"crypto/internal/fips140/sha256", "crypto/internal/fips140/sha512",
		"crypto/internal/fips140/sha3", "crypto/internal/fips140/hmac", "crypto/internal/fips140/hkdf",
		"crypto/internal/fips140/tls13", "crypto/internal/fips140/tls12", "crypto/sha256.", "crypto/sha512.", "crypto/hmac.",
		"crypto/hkdf.", "crypto/sha3."}},
	{"crypto: random", []string{"crypto/internal/fips140/drbg", "crypto/rand.", "crypto/internal/sysrand", "runtime.vgetrandom"}},
	{"mesh: point lookup asked (resume on a peer)", []string{mg + "sessionmesh/mesh.(*peer).lookup", mg + "sessionmesh/mesh.(*Mesh).Lookup",
		mg + "sessionmesh.(*Node).remoteLookup"}},
	{"session store: wrap, unwrap, records", []string{mg + "sessionmesh.", mg + "sessionmesh/store.", "crypto/tls.(*SessionState)",
		"crypto/tls.ParseSessionState"}},
	{"PROXY protocol header", []string{"github.com/pires/go-proxyproto", mg + "dataplane/server.(*Server).readProxyHeader",
		mg + "dataplane/proxyproto"}},
	{"TLS state machine (crypto/tls, tls12)", []string{"crypto/tls.", mg + "tls12."}},
	{"HTTP request parsing", []string{"net/http.(*conn).readRequest", "net/http.readRequest", "net/textproto.",
		mg + "dataplane/http1."}},
	{"proxy and upstream round trip", []string{"net/http.(*Transport)", "net/http.(*persistConn)", "net/http/httputil.",
		mg + "dataplane/proxy.", mg + "dataplane/filter."}},
	{"HTTP serving (net/http, x/net/http2)", []string{"net/http.", "golang.org/x/net/http2."}},
	{"metrics and logging", []string{"github.com/prometheus/", "go.uber.org/zap", "github.com/go-logr/"}},
	{"net and poll wrappers, accept loop, connection tracking", []string{mg + "dataplane/server.", "net.(*TCPListener)", "internal/poll.(*FD).Accept",
		"net.(*netFD)", "net.(*conn)", "internal/poll."}},
	{"runtime (other: memmove, maps, timers, signals)", []string{"runtime."}},
}

// Classify returns the bucket of a stack given as function names (any
// order; precedence comes from Rules, not from the position on the stack).
func Classify(stack []string) string {
	for _, r := range Rules {
		for _, fn := range stack {
			for _, m := range r.Match {
				if exact, ok := strings.CutPrefix(m, "="); ok && fn == exact || !ok && strings.Contains(fn, m) {
					return r.Bucket
				}
			}
		}
	}
	return Other
}

// Breakdown is CPU time per bucket, summed over the profiles added.
// The zero value is empty and ready; it is not safe for concurrent use.
type Breakdown struct {
	ns    map[string]int64
	total int64
}

// Add attributes every sample of a CPU profile (sample type cpu/nanoseconds).
func (b *Breakdown) Add(p *profile.Profile) error {
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("breakdown: not a CPU profile (no cpu/nanoseconds sample type)")
	}
	if b.ns == nil {
		b.ns = make(map[string]int64)
	}
	var stack []string
	for _, s := range p.Sample {
		stack = stack[:0]
		for _, loc := range s.Location {
			for _, l := range loc.Line {
				if l.Function != nil {
					stack = append(stack, l.Function.Name)
				}
			}
		}
		v := s.Value[idx]
		b.ns[Classify(stack)] += v
		b.total += v
	}
	return nil
}

// AddReader parses a profile (gzipped or not) from r and adds it.
func (b *Breakdown) AddReader(r io.Reader) error {
	p, err := profile.Parse(r)
	if err != nil {
		return fmt.Errorf("breakdown: %w", err)
	}
	return b.Add(p)
}

// AddFile adds the profile saved at path.
func (b *Breakdown) AddFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("breakdown: %w", err)
	}
	defer f.Close()
	if err := b.AddReader(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Nanos returns the CPU time attributed to bucket.
func (b *Breakdown) Nanos(bucket string) int64 { return b.ns[bucket] }

// Total returns the CPU time of every sample added.
func (b *Breakdown) Total() int64 { return b.total }

// Column is one side of a table: the profiles of one build under one load
// and the connections that load made while they were recorded.
type Column struct {
	Name  string
	B     *Breakdown
	Conns int
	// ProcNanos, when set, is the CPU time the processes used over the same
	// load by /proc: the table then shows what the profiles did not sample
	// (mostly kernel work, see docs/benchmarks.md) as a row of its own.
	ProcNanos int64
}

// perConn returns µs per connection.
func (c Column) perConn(ns int64) float64 {
	if c.Conns == 0 {
		return 0
	}
	return float64(ns) / 1e3 / float64(c.Conns)
}

// Markdown renders the columns side by side in µs of CPU per connection,
// one row per bucket in Rules order (rows empty in every column left out),
// the share of each column's total in brackets, and a total row. With two
// or more columns a last column gives the change from the first column to
// the last.
func Markdown(cols []Column) string {
	var b strings.Builder
	b.WriteString("| bucket |")
	for _, c := range cols {
		fmt.Fprintf(&b, " %s µs/conn |", c.Name)
	}
	diff := len(cols) >= 2
	if diff {
		fmt.Fprintf(&b, " %s − %s |", cols[len(cols)-1].Name, cols[0].Name)
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---:|")
	}
	if diff {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	buckets := make([]string, 0, len(Rules)+1)
	for _, r := range Rules {
		buckets = append(buckets, r.Bucket)
	}
	buckets = append(buckets, Other)
	row := func(name string, ns func(*Breakdown) int64, bold bool) {
		f := "%s"
		if bold {
			f = "**%s**"
		}
		fmt.Fprintf(&b, "| "+f+" |", name)
		for _, c := range cols {
			v := ns(c.B)
			share := 0.0
			if c.B.Total() > 0 {
				share = 100 * float64(v) / float64(c.B.Total())
			}
			fmt.Fprintf(&b, " "+f+" (%.0f %%) |", fmt.Sprintf("%.1f", c.perConn(v)), share)
		}
		if diff {
			first, last := cols[0], cols[len(cols)-1]
			fmt.Fprintf(&b, " "+f+" |", fmt.Sprintf("%+.1f", last.perConn(ns(last.B))-first.perConn(ns(first.B))))
		}
		b.WriteString("\n")
	}
	for _, bk := range buckets {
		empty := true
		for _, c := range cols {
			if c.B.Nanos(bk) != 0 {
				empty = false
			}
		}
		if !empty {
			row(bk, func(x *Breakdown) int64 { return x.Nanos(bk) }, false)
		}
	}
	row("total (profiled)", (*Breakdown).Total, true)
	proc := false
	for _, c := range cols {
		proc = proc || c.ProcNanos > 0
	}
	if proc {
		b.WriteString("| not in the profiles (/proc − profiled) |")
		for _, c := range cols {
			fmt.Fprintf(&b, " %.1f |", c.perConn(c.ProcNanos-c.B.Total()))
		}
		if diff {
			first, last := cols[0], cols[len(cols)-1]
			fmt.Fprintf(&b, " %+.1f |", last.perConn(last.ProcNanos-last.B.Total())-first.perConn(first.ProcNanos-first.B.Total()))
		}
		b.WriteString("\n| **total (/proc)** |")
		for _, c := range cols {
			fmt.Fprintf(&b, " **%.1f** |", c.perConn(c.ProcNanos))
		}
		if diff {
			first, last := cols[0], cols[len(cols)-1]
			fmt.Fprintf(&b, " **%+.1f** |", last.perConn(last.ProcNanos)-first.perConn(first.ProcNanos))
		}
		b.WriteString("\n")
	}
	return b.String()
}
