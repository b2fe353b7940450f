// Command perf profiles meshgate's data plane under load, side by side with
// nginx: it starts the echo backend, one meshgate replica (with --pprof-addr)
// and one nginx, then alternates the same load against both in rounds and
// prints requests (or handshakes) per second and server CPU per unit of work.
// With --profile DIR it also records a CPU profile of meshgate during each
// meshgate round (DIR/<scenario>-<round>.pprof), read with `go tool pprof`.
// hack/profile.sh wraps it.
//
//	go run ./test/perf --bin bin --scenarios h1,h2,reuse --rounds 3 --duration 5s --profile /tmp/prof
//
// `perf breakdown [--conns N] [--name NAME] PROFILE... [-- PROFILE...]`
// prints the per-connection breakdown (test/perf/breakdown) of saved CPU
// profiles instead: each "--"-separated group is one column (e.g. the three
// replicas of a build), divided by N connections (0 prints the buckets'
// shares only).
//
// Scenarios: h1 (h2load --h1, 32 clients), h2 (h2load, 8 clients x 16
// streams), reuse / new (openssl s_time -tls1_2 -reuse / -new). The loads are
// those of test/bench's scenarios 1 and 2, so figures compare. Scenario mesh
// (not in the default list) is test/bench's headline load on three meshgate
// replicas with the session mesh behind HAProxy, meshgate only, with a
// profile per replica.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "breakdown" {
		if err := printBreakdown(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "perf breakdown:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	bin        string
	scenarios  []string
	rounds     int
	dur        time.Duration
	profileDir string
	extra      []string
	onlyMG     bool
	baseline   string
}

func parseFlags() (options, error) {
	var o options
	scen := flag.String("scenarios", "h1,h2,reuse", "comma-separated scenarios: h1, h2, reuse, new, mesh")
	extra := flag.String("meshgate-args", "", "extra meshgate flags, space-separated")
	flag.StringVar(&o.bin, "bin", "bin", "directory with meshgate and echo-backend")
	flag.IntVar(&o.rounds, "rounds", 3, "alternate meshgate and nginx this many times per scenario")
	flag.DurationVar(&o.dur, "duration", 5*time.Second, "duration of each round, per server (whole seconds)")
	flag.StringVar(&o.profileDir, "profile", "", "directory for meshgate CPU profiles, one per meshgate round (empty: none)")
	flag.BoolVar(&o.onlyMG, "meshgate-only", false, "skip nginx (profiling only)")
	flag.StringVar(&o.baseline, "baseline", "", "another meshgate binary (e.g. a build of the previous commit) run as a third side in the same rounds")
	flag.Parse()
	o.scenarios = strings.Split(*scen, ",")
	o.extra = strings.Fields(*extra)
	if o.dur < time.Second || o.rounds < 1 {
		return o, fmt.Errorf("--duration must be ≥ 1s and --rounds ≥ 1")
	}
	return o, nil
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if err := harness.RequireTools("nginx", "openssl", "h2load"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshgate-perf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r := &harness.Runner{Out: os.Stderr}
	defer r.Close()
	abs, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	bins := harness.Bins{Meshgate: filepath.Join(abs, "meshgate"), Echo: filepath.Join(abs, "echo-backend")}
	pki, err := harness.MakePKI(filepath.Join(dir, "pki"), harness.Host, harness.OtherHost)
	if err != nil {
		return err
	}
	echo, err := harness.StartEcho(r, bins, dir, "127.0.0.10")
	if err != nil {
		return err
	}
	manifests, err := harness.Manifests{EchoAddr: echo.HTTPAddr, SecretYAML: pki.SecretYAML}.Write(filepath.Join(dir, "manifests"))
	if err != nil {
		return err
	}
	pprofAddr, err := harness.FreeAddr("127.0.0.21")
	if err != nil {
		return err
	}
	args := append([]string{"--log-level", "error", "--pprof-addr", pprofAddr}, o.extra...)
	c, err := harness.StartCluster(r, harness.ClusterConfig{Bins: bins, Dir: dir, ManifestDir: manifests, Replicas: 1, NoMesh: true, ExtraArgs: args}, 30*time.Second)
	if err != nil {
		return err
	}
	mg := c.Replicas[0]
	targets := []target{{name: "meshgate", addr: mg.HTTPSAddr, proc: mg.Proc, pprof: pprofAddr}}
	if o.baseline != "" {
		bb := bins
		if bb.Meshgate, err = filepath.Abs(o.baseline); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "baseline"), 0o755); err != nil {
			return err
		}
		bc, err := harness.StartCluster(r, harness.ClusterConfig{Bins: bb, Dir: filepath.Join(dir, "baseline"), ManifestDir: manifests, Replicas: 1, NoMesh: true, ExtraArgs: []string{"--log-level", "error"}}, 30*time.Second)
		if err != nil {
			return err
		}
		targets = append(targets, target{name: "baseline", addr: bc.Replicas[0].HTTPSAddr, proc: bc.Replicas[0].Proc})
	}
	if !o.onlyMG {
		addr, err := harness.FreeAddr("127.0.0.41")
		if err != nil {
			return err
		}
		ng, err := harness.StartNginx(r, harness.NginxConfig{Dir: dir, Name: "nginx-perf", Listen: addr, PKI: pki, Upstream: echo.HTTPAddr})
		if err != nil {
			return err
		}
		targets = append(targets, target{name: "nginx", addr: ng.Addr, proc: ng.Proc})
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	for _, s := range o.scenarios {
		if s == "mesh" {
			if err := runMesh(ctx, o, bins, dir, pki, echo); err != nil {
				return fmt.Errorf("mesh: %w", err)
			}
			continue
		}
		if err := runScenario(ctx, o, s, targets); err != nil {
			return err
		}
	}
	return nil
}

// result is one side's total over the rounds.
type result struct {
	units   float64 // requests or handshakes
	seconds float64
	ticks   int64
	act     harness.Activity // the server's system calls and context switches
}

func (r result) rate() float64 { return r.units / max(r.seconds, 1e-9) }

// ticksPer returns CPU ticks per n units.
func (r result) ticksPer(n float64) float64 { return float64(r.ticks) * n / max(r.units, 1) }

// target is one server under test.
type target struct {
	name  string
	addr  string
	proc  *harness.Proc
	pprof string // pprof address, "" when the target has none
}

// runScenario alternates s over every target for o.rounds rounds and prints
// each target's rate and CPU per unit of work, with ratios to the last
// target (nginx unless --meshgate-only).
func runScenario(ctx context.Context, o options, s string, targets []target) error {
	res := make([]result, len(targets))
	for round := range o.rounds {
		for i, t := range targets {
			prof := ""
			if o.profileDir != "" && t.pprof != "" {
				prof = filepath.Join(o.profileDir, fmt.Sprintf("%s-%d.pprof", s, round))
			}
			m, err := measure(ctx, s, t.addr, t.proc, o.dur, t.pprof, prof)
			if err != nil {
				return fmt.Errorf("%s %s: %w", t.name, s, err)
			}
			add(&res[i], m)
		}
	}
	per, unit := 10000.0, "10k req"
	if s == "reuse" || s == "new" {
		per, unit = 1000, "1000 hs"
	}
	ref := res[len(res)-1]
	for i, t := range targets {
		r := res[i]
		fmt.Printf("%-6s %-9s %9.0f/s %7.1f ticks/%s", s, t.name, r.rate(), r.ticksPer(per), unit)
		u := max(r.units, 1)
		fmt.Printf("  per unit: %.2f reads %.2f writes %.2f ctxsw", float64(r.act.ReadCalls)/u, float64(r.act.WriteCalls)/u, float64(r.act.CtxSwitches)/u)
		if i < len(targets)-1 {
			fmt.Printf("  vs %s: rate %.2fx cpu %.2fx", targets[len(targets)-1].name,
				r.rate()/max(ref.rate(), 1e-9), r.ticksPer(per)/max(ref.ticksPer(per), 1e-9))
		}
		fmt.Println()
	}
	return nil
}

func add(r *result, o result) {
	r.units += o.units
	r.seconds += o.seconds
	r.ticks += o.ticks
	r.act.ReadCalls += o.act.ReadCalls
	r.act.WriteCalls += o.act.WriteCalls
	r.act.CtxSwitches += o.act.CtxSwitches
}

// measure runs scenario s against addr for dur, recording server's CPU and,
// when prof is set, a CPU profile from pprofAddr over the same window.
func measure(ctx context.Context, s, addr string, server *harness.Proc, dur time.Duration, pprofAddr, prof string) (result, error) {
	secs := int(dur.Seconds())
	var cmd []string
	switch s {
	case "h1", "h2":
		cmd = []string{"h2load", "-D", strconv.Itoa(secs), "-t", "1", "--connect-to", addr}
		if s == "h1" {
			cmd = append(cmd, "--h1", "-c", "32", "-m", "1")
		} else {
			cmd = append(cmd, "-c", "8", "-m", "16")
		}
		cmd = append(cmd, harness.URL(addr, "/bench"))
	case "reuse", "new":
		cmd = []string{"openssl", "s_time", "-connect", addr, "-tls1_2", "-" + s, "-time", strconv.Itoa(secs)}
	default:
		return result{}, fmt.Errorf("unknown scenario %q", s)
	}
	profDone := make(chan error, 1)
	if prof != "" {
		go func() { profDone <- harness.CPUProfile(ctx, pprofAddr, secs, prof) }()
	} else {
		profDone <- nil
	}
	cctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	t0, err := server.CPUTicks()
	if err != nil {
		return result{}, err
	}
	a0, err := server.Activity()
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	out, err := exec.CommandContext(cctx, cmd[0], cmd[1:]...).CombinedOutput()
	elapsed := time.Since(start)
	t1, _ := server.CPUTicks()
	a1, _ := server.Activity()
	if perr := <-profDone; perr != nil {
		return result{}, perr
	}
	if err != nil {
		return result{}, fmt.Errorf("%s: %w\n%s", strings.Join(cmd, " "), err, out)
	}
	units, secsRun, err := parse(s, out)
	if err != nil {
		return result{}, err
	}
	if secsRun == 0 {
		secsRun = elapsed.Seconds()
	}
	return result{units: units, seconds: secsRun, ticks: t1 - t0, act: a1.Sub(a0)}, nil
}

var (
	h2loadRE = regexp.MustCompile(`finished in ([0-9.]+)(s|ms), [0-9.]+ req/s`)
	okRE     = regexp.MustCompile(`status codes: (\d+) 2xx`)
	sTimeRE  = regexp.MustCompile(`(\d+) connections in [0-9.]+s;`)
)

// parse returns the units of work done and, for h2load, its measured
// seconds (0 for s_time, whose own timing is whole seconds).
func parse(s string, out []byte) (float64, float64, error) {
	if s == "h1" || s == "h2" {
		m, ok := h2loadRE.FindSubmatch(out), okRE.FindSubmatch(out)
		if m == nil || ok == nil {
			return 0, 0, fmt.Errorf("unexpected h2load output:\n%s", out)
		}
		secs, _ := strconv.ParseFloat(string(m[1]), 64)
		if string(m[2]) == "ms" {
			secs /= 1000
		}
		n, _ := strconv.ParseFloat(string(ok[1]), 64)
		return n, secs, nil
	}
	all := sTimeRE.FindAllSubmatch(out, -1)
	if len(all) == 0 {
		return 0, 0, fmt.Errorf("unexpected s_time output:\n%s", out)
	}
	n, _ := strconv.ParseFloat(string(all[len(all)-1][1]), 64)
	return n, 0, nil
}
