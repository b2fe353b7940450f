// Command bench runs meshgate's benchmarks side by side with nginx from
// Debian in one run and writes the results table (docs/benchmarks.md) and
// the cross-replica resumption plot (an SVG). hack/bench.sh (`make bench`)
// runs it; every figure in the document comes from the run that wrote it.
//
//	go run ./test/bench --bin bin --out docs/benchmarks.md --svg docs/benchmarks-resumption.svg
//
// Scenarios (all on 127.0.0.0/8, the same echo backend behind both):
//  1. keep-alive HTTPS requests/s with h2load, HTTP/1.1 and HTTP/2, one
//     meshgate vs one nginx (and, with --baseline, a meshgate build from
//     before a change, for a before/after table);
//  2. full and resumed TLS 1.2 handshakes/s (RSA-2048) with openssl s_time
//     -new / -reuse, one meshgate vs one nginx, with server CPU;
//  3. the headline: three replicas behind HAProxy (round robin, PROXY v2),
//     clients reconnecting with one cached session each: connections/s,
//     resumption rate and server CPU per connection;
//  4. cross-replica resumption rate for 1..5 replicas.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	binDir := flag.String("bin", "bin", "directory with meshgate and echo-backend (built there if missing)")
	out := flag.String("out", "docs/benchmarks.md", "results document to write")
	svg := flag.String("svg", "docs/benchmarks-resumption.svg", "resumption plot to write")
	dur := flag.Duration("duration", 9*time.Second, "total duration of each h2load and s_time figure, per server")
	rounds := flag.Int("rounds", 3, "alternate meshgate and nginx this many times per figure (a shared machine's load swings hit both)")
	conns := flag.Int("conns", 2400, "connections per headline run (8 concurrent clients)")
	reconnects := flag.Int("reconnects", 200, "sequential reconnects per point of the replica sweep")
	maxReplicas := flag.Int("max-replicas", 5, "largest replica count of the sweep")
	baseline := flag.String("baseline", "", "another meshgate binary (a build from before a change) run as a third side of the keep-alive figures")
	baselineLabel := flag.String("baseline-label", "baseline", "what the --baseline binary is, for the table (a commit)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()

	if err := harness.RequireTools("haproxy", "nginx", "openssl", "h2load"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshgate-bench-")
	if err != nil {
		return err
	}
	r := &harness.Runner{Out: os.Stderr}
	defer r.Close()
	bins, err := locateBins(*binDir)
	if err != nil {
		return err
	}
	b := &bench{ctx: ctx, r: r, dir: dir, bins: bins, dur: *dur, conns: *conns, reconnects: *reconnects, maxReplicas: *maxReplicas, rounds: max(1, *rounds)}
	if *baseline != "" {
		if b.baseline, err = filepath.Abs(*baseline); err != nil {
			return err
		}
		b.baselineLabel = *baselineLabel
	}
	if b.pki, err = harness.MakePKI(filepath.Join(dir, "pki"), harness.Host, harness.OtherHost); err != nil {
		return err
	}
	if b.echo, err = harness.StartEcho(r, bins, dir, "127.0.0.10"); err != nil {
		return err
	}
	rep := &report{Machine: describeMachine(), Started: time.Now().UTC(), Duration: *dur, Rounds: b.rounds, CPUs: runtime.NumCPU(), BaselineLabel: b.baselineLabel}
	rep.LoadBefore = loadAvg()
	b.log("1/4 keep-alive requests/s (h2load)")
	rep.KeepAlive, rep.KeepAliveErr = b.keepAlive()
	b.log("2/4 full vs resumed handshakes (openssl s_time)")
	rep.Handshakes, rep.HandshakesErr = b.handshakes()
	b.log("3/4 three replicas behind HAProxy, round-robin reconnects")
	rep.Headline, rep.HeadlineErr = b.headline()
	b.log("4/4 cross-replica resumption, 1..%d replicas", b.maxReplicas)
	rep.Sweep, rep.SweepErr = b.sweep()
	rep.Finished = time.Now().UTC()
	rep.LoadAfter = loadAvg()
	rep.SVGName = filepath.Base(*svg)
	if err := os.WriteFile(*svg, []byte(plotSweep(rep.Sweep)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(*out, []byte(rep.markdown()), 0o644); err != nil {
		return err
	}
	b.log("wrote %s and %s (work dir %s)", *out, *svg, dir)
	if ctx.Err() == nil {
		r.Close()
		_ = os.RemoveAll(dir)
	}
	return nil
}

// locateBins uses dir/meshgate and dir/echo-backend, building them first
// when missing.
func locateBins(dir string) (harness.Bins, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return harness.Bins{}, err
	}
	b := harness.Bins{Meshgate: filepath.Join(abs, "meshgate"), Echo: filepath.Join(abs, "echo-backend")}
	for pkg, out := range map[string]string{"./cmd/meshgate": b.Meshgate, "./test/echo": b.Echo} {
		if _, err := os.Stat(out); err != nil {
			if err := harness.GoBuild(pkg, out); err != nil {
				return b, err
			}
		}
	}
	return b, nil
}
