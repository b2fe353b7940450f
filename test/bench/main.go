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
//  3. the headline matrix: three meshgate replicas (and, with --baseline,
//     three replicas of another meshgate build, e.g. the code before a
//     change) and three nginx, each trio behind its own HAProxy (round
//     robin, PROXY v2), 1 and 16 clients reconnecting with one cached
//     session each, TLS 1.2 / 1.3, default groups / X25519 only, RSA-2048
//     / ECDSA P-256: resumption share, server CPU per connection and the
//     ratio nginx / meshgate, alternating sides in rounds; then the
//     per-connection CPU breakdown from profiles of every meshgate side
//     (test/perf/breakdown);
//  4. cross-replica resumption rate for 1..5 replicas.
//
// --quick runs the matrix's four target scenarios only (RSA, default
// groups) and --sections picks sections, for a short development loop.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
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
	matrixDur := flag.Duration("matrix-duration", 2*time.Second, "load per side and round of each matrix scenario")
	profileDur := flag.Duration("profile-duration", 6*time.Second, "load per meshgate side of each profiled breakdown (whole seconds; 0 skips the breakdowns)")
	profileDir := flag.String("profile-dir", "", "keep the breakdowns' CPU profiles here (default: the work dir, removed)")
	quick := flag.Bool("quick", false, "matrix: only the four target scenarios (RSA-2048, default groups)")
	sections := flag.String("sections", "keepalive,handshakes,matrix,runtime,sweep", "comma-separated sections to run")
	only := flag.String("only", "", "matrix and runtime sections: only the scenarios (and breakdowns) whose name contains this text, e.g. '1 client(s) TLS 1.3 default RSA-2048' (a before/after of one scenario)")
	var variants []meshgateVariant
	flag.Func("variant", "NAME:ENV=VALUE[,ENV=VALUE...]: the run's meshgate with this environment as another matrix side (repeatable), e.g. 'gc100:GOGC=100'", func(v string) error {
		name, env, ok := strings.Cut(v, ":")
		if !ok || name == "" || !strings.Contains(env, "=") {
			return fmt.Errorf("want NAME:ENV=VALUE[,ENV=VALUE...], got %q", v)
		}
		variants = append(variants, meshgateVariant{Name: name, Env: strings.Split(env, ",")})
		return nil
	})
	reconnects := flag.Int("reconnects", 200, "sequential reconnects per point of the replica sweep")
	maxReplicas := flag.Int("max-replicas", 5, "largest replica count of the sweep")
	baseline := flag.String("baseline", "", "another meshgate binary (a build from before a change) run as another side of the keep-alive figures and the matrix")
	baselineLabel := flag.String("baseline-label", "baseline", "what the --baseline binary is, for the table (a commit)")
	commit := flag.String("commit", "", "the commit the run's meshgate was built from, for the Run line")
	runNote := flag.String("run-note", "", "one sentence for the Run line when the document is not from one make bench run (e.g. sections run in consecutive holds)")
	timeout := flag.Duration("timeout", 20*time.Minute, "bound on the whole run (a full run with a baseline side takes about 12 minutes)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
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
	b := &bench{ctx: ctx, r: r, dir: dir, bins: bins, dur: *dur, matrixDur: *matrixDur, profileDur: profileDur.Truncate(time.Second),
		profileDir: *profileDir, quick: *quick, only: *only, reconnects: *reconnects, maxReplicas: *maxReplicas, rounds: max(1, *rounds)}
	if *baseline != "" {
		if b.baseline, err = filepath.Abs(*baseline); err != nil {
			return err
		}
		b.baselineLabel = *baselineLabel
	}
	if b.profileDir == "" {
		b.profileDir = filepath.Join(dir, "profiles")
	}
	if err := os.MkdirAll(b.profileDir, 0o755); err != nil {
		return err
	}
	if b.pki, err = harness.MakePKI(filepath.Join(dir, "pki"), harness.Host, harness.OtherHost); err != nil {
		return err
	}
	if b.ecdsa, err = harness.MakePKIWith(harness.PKIOptions{KeyType: "ecdsa", SecretName: ecdsaSecret}, filepath.Join(dir, "pki-ecdsa"), ecdsaHost); err != nil {
		return err
	}
	sides := []meshgateVariant{{Name: "meshgate"}}
	if b.baseline != "" {
		sides = append(sides, meshgateVariant{Name: b.baselineLabel, Bin: b.baseline})
	}
	sides = append(sides, variants...)
	run := map[string]bool{}
	for _, s := range strings.Split(*sections, ",") {
		run[strings.TrimSpace(s)] = true
	}
	if b.echo, err = harness.StartEcho(r, bins, dir, "127.0.0.10"); err != nil {
		return err
	}
	rep := &report{Machine: describeMachine(), Started: time.Now().UTC(), Duration: *dur, Rounds: b.rounds, CPUs: runtime.NumCPU(), BaselineLabel: b.baselineLabel,
		Commit: *commit, RunNote: *runNote}
	rep.LoadBefore = loadAvg()
	if run["keepalive"] {
		b.log("1/4 keep-alive requests/s (h2load)")
		rep.KeepAlive, rep.KeepAliveErr = b.keepAlive()
	}
	if run["handshakes"] {
		b.log("2/4 full vs resumed handshakes (openssl s_time)")
		rep.Handshakes, rep.HandshakesErr = b.handshakes()
	}
	if run["matrix"] {
		b.log("3/4 three replicas per side behind HAProxy, round-robin reconnects: %d scenarios", len(b.filter(matrixScenarios(b.quick))))
		rep.Matrix, rep.MatrixErr = b.runMatrix(sides, b.filter(matrixScenarios(b.quick)), true)
	}
	if run["runtime"] {
		b.log("3/4 runtime settings: the target scenarios with GOMAXPROCS and GOGC variants")
		rep.Runtime, rep.RuntimeErr = b.runMatrix(append([]meshgateVariant{{Name: "meshgate"}}, runtimeVariants()...), b.filter(matrixScenarios(true)), false)
	}
	if run["sweep"] {
		b.log("4/4 cross-replica resumption, 1..%d replicas", b.maxReplicas)
		rep.Sweep, rep.SweepErr = b.sweep()
	}
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
