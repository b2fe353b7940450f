package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshgate/meshgate/test/harness"
	"github.com/meshgate/meshgate/test/perf/breakdown"
)

// ecdsaHost is the virtual host served with the ECDSA P-256 certificate
// (Host and OtherHost keep the RSA-2048 one), so one set of servers holds
// both and the client picks the key type by SNI.
const ecdsaHost = "ecdsa.meshgate.test"

// scenario is one cell of the round-robin matrix.
type scenario struct {
	Clients int
	Version uint16
	// X25519 makes the client offer X25519 alone; otherwise it offers Go's
	// default groups (X25519MLKEM768, X25519, P-256, P-384), of which
	// meshgate's default policy picks the hybrid and OpenSSL 3.0 X25519.
	X25519 bool
	ECDSA  bool // ECDSA P-256 certificate instead of RSA-2048
	// Full makes the client keep no session, so every connection is a
	// full handshake on every side: the certificate's price.
	Full bool
}

func (s scenario) groups() string {
	switch {
	case s.Version == tls.VersionTLS12:
		return "X25519 (ECDHE)"
	case s.X25519:
		return "X25519 only"
	default:
		return "default"
	}
}

func (s scenario) cert() string {
	if s.ECDSA {
		return "ECDSA P-256"
	}
	return "RSA-2048"
}

// target is the ratio for the scenario (nginx CPU / meshgate CPU
// per connection), or 0 when the scenario has none.
func (s scenario) target() float64 {
	if s.ECDSA || s.X25519 || s.Full {
		return 0
	}
	if s.Version == tls.VersionTLS12 {
		return 1.5
	}
	return 1.2
}

func (s scenario) String() string {
	full := ""
	if s.Full {
		full = " full handshakes"
	}
	return fmt.Sprintf("%d client(s) %s %s %s%s", s.Clients, tls.VersionName(s.Version), s.groups(), s.cert(), full)
}

// matrixScenarios is every scenario of a full run, or the targets' four
// (RSA, default groups) of a quick one. TLS 1.2 has no "X25519 only" row:
// its ECDHE picks X25519 from the default groups on both servers already
// (the post-quantum hybrid is TLS 1.3 only). A full run ends with full
// handshakes (no session kept) with each certificate type.
func matrixScenarios(quick bool) []scenario {
	out := resumingScenarios(quick)
	if !quick {
		for _, ecdsa := range []bool{false, true} {
			out = append(out, scenario{Clients: 16, Version: tls.VersionTLS13, ECDSA: ecdsa, Full: true})
		}
	}
	return out
}

// filter keeps the scenarios whose name contains b.only (all of them when
// it is empty).
func (b *bench) filter(scs []scenario) []scenario {
	if b.only == "" {
		return scs
	}
	var out []scenario
	for _, sc := range scs {
		if strings.Contains(sc.String(), b.only) {
			out = append(out, sc)
		}
	}
	return out
}

// resumingScenarios are the matrix's scenarios whose clients keep a session.
func resumingScenarios(quick bool) []scenario {
	var out []scenario
	for _, clients := range []int{1, 16} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			for _, ecdsa := range []bool{false, true} {
				for _, x := range []bool{false, true} {
					if x && v == tls.VersionTLS12 || quick && (ecdsa || x) {
						continue
					}
					out = append(out, scenario{Clients: clients, Version: v, X25519: x, ECDSA: ecdsa})
				}
			}
		}
	}
	return out
}

// side is one server kind of the matrix: a meshgate build (three replicas
// sharing sessions) or nginx (three per-node servers).
type side struct {
	Name  string
	nginx bool
	mg    trio     // meshgate
	cache trio     // nginx: per-node session cache, tickets off (TLS 1.3)
	tick  trio     // nginx: per-node ticket keys (TLS 1.2: Go's client resumes with tickets only)
	pprof []string // meshgate: each replica's pprof address
}

func (s *side) trio(version uint16) trio {
	switch {
	case !s.nginx:
		return s.mg
	case version == tls.VersionTLS12:
		return s.tick
	default:
		return s.cache
	}
}

// meshgateVariant is a meshgate side to start: a binary and its environment.
type meshgateVariant struct {
	Name string
	Bin  string // meshgate binary; "" means the run's
	Env  []string
}

// matrixRow is one scenario's totals per side (index as matrix.Sides).
type matrixRow struct {
	Scenario scenario
	Sides    []loadResult
}

// breakdownCol is one side's profiles under one breakdown scenario.
type breakdownCol struct {
	Side      string
	B         *breakdown.Breakdown
	Stats     harness.Stats
	ProcTicks int64 // /proc CPU of the replicas over the same load
	Err       string
}

// breakdownResult is the per-connection breakdown of one scenario.
type breakdownResult struct {
	Scenario scenario
	Cols     []breakdownCol
}

// matrix is section 3's result.
type matrix struct {
	Sides      []string
	Rows       []matrixRow
	Breakdowns []breakdownResult
	Dur        time.Duration // per side and round
	ProfileDur time.Duration
	Rounds     int
	Quick      bool
}

// matrixManifests writes the standalone manifests of a meshgate side: the
// harness's RSA Ingress for Host and OtherHost, and one for ecdsaHost with
// the ECDSA Secret.
func (b *bench) matrixManifests(dir string) (string, error) {
	return harness.Manifests{EchoAddr: b.echo.HTTPAddr, SecretYAML: b.pki.SecretYAML,
		TLSHosts: []harness.TLSHost{{Host: ecdsaHost, SecretName: ecdsaSecret, SecretYAML: b.ecdsa.SecretYAML}}}.Write(dir)
}

// ecdsaSecret names the ECDSA certificate's Secret.
const ecdsaSecret = "echo-tls-ecdsa"

// startMatrixSides starts every meshgate variant (lb IPs 127.0.0.30 on)
// and the two nginx trios, each behind its own HAProxy with PROXY v2.
func (b *bench) startMatrixSides(r *harness.Runner, variants []meshgateVariant) ([]*side, error) {
	var sides []*side
	for i, v := range variants {
		dir := b.subdir("matrix-" + strings.ReplaceAll(v.Name, " ", "-"))
		manifests, err := b.matrixManifests(filepath.Join(dir, "manifests"))
		if err != nil {
			return nil, err
		}
		bins := b.bins
		if v.Bin != "" {
			bins.Meshgate = v.Bin
		}
		c, err := harness.StartCluster(r, harness.ClusterConfig{Bins: bins, Dir: dir, ManifestDir: manifests, Replicas: 3,
			ProxyProtocol: true, Pprof: true, ExtraArgs: quiet, Env: v.Env}, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.Name, err)
		}
		s := &side{Name: v.Name}
		for _, rep := range c.Replicas {
			s.mg.procs = append(s.mg.procs, rep.Proc)
			s.pprof = append(s.pprof, rep.PprofAddr)
		}
		if s.mg.lb, err = harness.StartHAProxy(r, dir, "haproxy", fmt.Sprintf("127.0.0.%d", 30+i), c.HTTPSAddrs(), true); err != nil {
			return nil, err
		}
		sides = append(sides, s)
	}
	ng := &side{Name: "nginx", nginx: true}
	dir := b.subdir("matrix-nginx")
	for _, set := range []struct {
		t       *trio
		tickets bool
		name    string
		ip      string
	}{{&ng.cache, false, "nginx-cache", "127.0.0.50"}, {&ng.tick, true, "nginx-tickets", "127.0.0.51"}} {
		ns, err := harness.StartNginxSet(r, harness.NginxConfig{Dir: dir, Name: set.name, PKI: b.pki, Upstream: b.echo.HTTPAddr,
			Tickets: set.tickets, Servers: []harness.NginxServer{{Name: ecdsaHost, Cert: b.ecdsa.ServerCert, Key: b.ecdsa.ServerKey}}}, 3)
		if err != nil {
			return nil, err
		}
		for _, x := range ns {
			set.t.procs = append(set.t.procs, x.Proc)
		}
		if set.t.lb, err = harness.StartHAProxy(r, dir, "haproxy-"+set.name, set.ip, harness.NginxAddrs(ns), true); err != nil {
			return nil, err
		}
	}
	return append(sides, ng), nil
}

// clientConfig is the scenario's client: its version, groups and SNI,
// trusting both demo CAs.
func (b *bench) clientConfig(s scenario) (*tls.Config, error) {
	cfg, err := b.pki.ClientConfig(s.Version)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(b.ecdsa.CACert)
	if err != nil {
		return nil, err
	}
	if !cfg.RootCAs.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", b.ecdsa.CACert)
	}
	if s.ECDSA {
		cfg.ServerName = ecdsaHost
	}
	if s.X25519 {
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	if s.Full {
		cfg.ClientSessionCache = nil
	}
	return cfg, nil
}

// runMatrix measures every scenario on every side: rounds alternations,
// the side order rotating each round so that no side always follows the
// same one, each side loaded for b.matrixDur per round; then, when
// breakdowns is set, the profiled breakdowns.
func (b *bench) runMatrix(variants []meshgateVariant, scenarios []scenario, breakdowns bool) (*matrix, string) {
	r := &harness.Runner{Out: b.r.Out}
	defer r.Close()
	m := &matrix{Dur: b.matrixDur, ProfileDur: b.profileDur, Rounds: b.rounds, Quick: b.quick}
	sides, err := b.startMatrixSides(r, variants)
	if err != nil {
		return m, err.Error()
	}
	for _, s := range sides {
		m.Sides = append(m.Sides, s.Name)
	}
	for _, sc := range scenarios {
		if b.ctx.Err() != nil {
			return m, b.ctx.Err().Error()
		}
		cfg, err := b.clientConfig(sc)
		if err != nil {
			return m, err.Error()
		}
		row := matrixRow{Scenario: sc, Sides: make([]loadResult, len(sides))}
		for round := range b.rounds {
			for k := range sides {
				i := (k + round) % len(sides)
				row.Sides[i].add(b.loadFor(cfg, sides[i].trio(sc.Version), sc.Clients, b.matrixDur, nil))
			}
		}
		var parts []string
		for i, s := range sides {
			parts = append(parts, fmt.Sprintf("%s %.1f ticks/1000 %.0f%% resumed", s.Name, row.Sides[i].TicksPer1000(), row.Sides[i].Stats.Rate()))
		}
		b.log("%v: %s", sc, strings.Join(parts, ", "))
		m.Rows = append(m.Rows, row)
	}
	if breakdowns && b.profileDur > 0 {
		for _, sc := range b.filter(breakdownScenarios()) {
			m.Breakdowns = append(m.Breakdowns, b.profileSides(sc, sides))
		}
	}
	return m, ""
}

// loadFor runs clients reconnecting to t for d and measures t's CPU over
// the measured part; primed runs just before it starts.
func (b *bench) loadFor(cfg *tls.Config, t trio, clients int, d time.Duration, primed func()) loadResult {
	var before int64
	st := harness.LoadFor(b.ctx, cfg, t.lb.Addr, clients, d, func() {
		before = t.cpu()
		if primed != nil {
			primed()
		}
	})
	return loadResult{Stats: st, CPUTicks: t.cpu() - before}
}

// runtimeVariants are the runtime settings section 3's runtime table
// compares with the defaults, on the run's meshgate.
func runtimeVariants() []meshgateVariant {
	return []meshgateVariant{
		{Name: "GOMAXPROCS=1", Env: []string{"GOMAXPROCS=1"}},
		{Name: "GOGC=100", Env: []string{"GOGC=100"}},
		{Name: "GOGC=400", Env: []string{"GOGC=400"}},
	}
}

// breakdownScenarios are the loads whose profiles section 3 breaks down:
// TLS 1.3 at one client too, the target scenario with the least margin,
// where every hand-off and wake-up of an otherwise idle process counts.
func breakdownScenarios() []scenario {
	return []scenario{{Clients: 1, Version: tls.VersionTLS13}, {Clients: 16, Version: tls.VersionTLS13}, {Clients: 16, Version: tls.VersionTLS12}}
}

// profileSides records a CPU profile of every replica of every meshgate
// side while it carries scenario sc for b.profileDur, one side at a time.
// The run's meshgate comes last, so the breakdown's last column is the
// change from the first (the baseline) to it.
func (b *bench) profileSides(sc scenario, sides []*side) breakdownResult {
	res := breakdownResult{Scenario: sc}
	cfg, err := b.clientConfig(sc)
	var order []*side
	for _, s := range sides[1:] {
		if !s.nginx {
			order = append(order, s)
		}
	}
	for _, s := range append(order, sides[0]) {
		col := breakdownCol{Side: s.Name, B: &breakdown.Breakdown{}}
		if err != nil {
			col.Err = err.Error()
			res.Cols = append(res.Cols, col)
			continue
		}
		secs := int(b.profileDur.Seconds())
		paths := make([]string, len(s.pprof))
		done := make(chan error, len(s.pprof))
		lr := b.loadFor(cfg, s.mg, sc.Clients, b.profileDur, func() {
			for i, a := range s.pprof {
				paths[i] = filepath.Join(b.profileDir, fmt.Sprintf("%s-%s-%dc-%d.pprof", strings.ReplaceAll(s.Name, " ", "-"),
					strings.ReplaceAll(tls.VersionName(sc.Version), " ", ""), sc.Clients, i+1))
				go func() { done <- harness.CPUProfile(b.ctx, a, secs, paths[i]) }()
			}
		})
		col.Stats, col.ProcTicks = lr.Stats, lr.CPUTicks
		var errs []string
		for range s.pprof {
			if err := <-done; err != nil {
				errs = append(errs, err.Error())
			}
		}
		for _, p := range paths {
			if len(errs) == 0 {
				if err := col.B.AddFile(p); err != nil {
					errs = append(errs, err.Error())
				}
			}
		}
		col.Err = strings.Join(errs, "; ")
		b.log("breakdown %v %s: %d conns, %.0f µs/conn profiled", sc, s.Name, col.Stats.Conns,
			float64(col.B.Total())/1e3/float64(max(col.Stats.Conns, 1)))
		res.Cols = append(res.Cols, col)
	}
	return res
}
