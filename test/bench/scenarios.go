package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// quiet makes meshgate log errors only, as the nginx side runs with
// access_log off.
var quiet = []string{"--log-level", "error"}

// bench holds what every scenario shares. One goroutine uses it.
type bench struct {
	ctx        context.Context
	r          *harness.Runner
	dir        string
	bins       harness.Bins
	pki        *harness.PKI
	echo       *harness.Echo
	ecdsa      *harness.PKI // ECDSA P-256 certificate for ecdsaHost
	dur        time.Duration
	matrixDur  time.Duration // per side and round of a matrix cell
	profileDur time.Duration // per side of a breakdown; 0 skips them
	profileDir string
	quick      bool
	// only, when not empty, keeps the matrix scenarios and breakdowns
	// whose String() contains it (filter).
	only        string
	reconnects  int
	maxReplicas int
	rounds      int // each side-by-side figure alternates meshgate and nginx this many times
	seq         int
	// baseline, if set, is another meshgate binary run as a third side
	// of scenario 1 (a build from before a change); baselineLabel names it.
	baseline, baselineLabel string
}

// slice is the duration of one round of a timed run (at least a second).
func (b *bench) slice() time.Duration {
	return max(time.Second, (b.dur / time.Duration(b.rounds)).Truncate(time.Second))
}

func (b *bench) log(format string, args ...any) { b.r.Logf("bench: "+format, args...) }

// subdir returns a fresh work directory for one scenario.
func (b *bench) subdir(name string) string {
	b.seq++
	return filepath.Join(b.dir, fmt.Sprintf("%02d-%s", b.seq, name))
}

// single starts one meshgate (no PROXY protocol, no peers) and one nginx
// (session cache, tickets off) for the direct client benchmarks. Both stop
// when the returned runner is closed.
func (b *bench) single() (*harness.Runner, *harness.Replica, *harness.Nginx, error) {
	r := &harness.Runner{Out: b.r.Out}
	dir := b.subdir("single")
	manifests, err := harness.Manifests{EchoAddr: b.echo.HTTPAddr, SecretYAML: b.pki.SecretYAML}.Write(filepath.Join(dir, "manifests"))
	if err != nil {
		return r, nil, nil, err
	}
	c, err := harness.StartCluster(r, harness.ClusterConfig{Bins: b.bins, Dir: dir, ManifestDir: manifests, Replicas: 1, NoMesh: true, ExtraArgs: quiet}, 30*time.Second)
	if err != nil {
		return r, nil, nil, err
	}
	addr, err := harness.FreeAddr("127.0.0.41")
	if err != nil {
		return r, nil, nil, err
	}
	ng, err := harness.StartNginx(r, harness.NginxConfig{Dir: dir, Name: "nginx-single", Listen: addr, PKI: b.pki, Upstream: b.echo.HTTPAddr})
	if err != nil {
		return r, nil, nil, err
	}
	return r, c.Replicas[0], ng, nil
}

// keepAliveRow is one protocol of scenario 1. Baseline is the --baseline
// meshgate binary (the "before" of a change), when there is one.
type keepAliveRow struct {
	Proto                              string
	Clients, Streams                   int
	Meshgate, Nginx, Baseline          h2loadResult
	MeshgateErr, NginxErr, BaselineErr string
}

func (b *bench) keepAlive() ([]keepAliveRow, string) {
	r, mg, ng, err := b.single()
	defer r.Close()
	if err != nil {
		return nil, err.Error()
	}
	var base *harness.Replica
	if b.baseline != "" {
		if base, err = b.startBaseline(r); err != nil {
			return nil, "baseline: " + err.Error()
		}
	}
	var rows []keepAliveRow
	for _, p := range []struct {
		name             string
		h1               bool
		clients, streams int
	}{{"HTTP/1.1", true, 32, 1}, {"HTTP/2", false, 8, 16}} {
		row := keepAliveRow{Proto: p.name, Clients: p.clients, Streams: p.streams}
		for range b.rounds {
			m, err := runH2load(b.ctx, mg.HTTPSAddr, p.h1, p.clients, p.streams, b.slice(), mg.Proc)
			if err != nil {
				row.MeshgateErr = err.Error()
			}
			row.Meshgate.add(m, b.rounds)
			n, err := runH2load(b.ctx, ng.Addr, p.h1, p.clients, p.streams, b.slice(), ng.Proc)
			if err != nil {
				row.NginxErr = err.Error()
			}
			row.Nginx.add(n, b.rounds)
			if base != nil {
				o, err := runH2load(b.ctx, base.HTTPSAddr, p.h1, p.clients, p.streams, b.slice(), base.Proc)
				if err != nil {
					row.BaselineErr = err.Error()
				}
				row.Baseline.add(o, b.rounds)
			}
		}
		b.log("%s: meshgate %.0f req/s, nginx %.0f req/s, baseline %.0f req/s", p.name, row.Meshgate.ReqPerSec, row.Nginx.ReqPerSec, row.Baseline.ReqPerSec)
		rows = append(rows, row)
	}
	return rows, ""
}

// startBaseline starts the --baseline meshgate binary like single's
// meshgate, on its own address, stopped with r.
func (b *bench) startBaseline(r *harness.Runner) (*harness.Replica, error) {
	dir := b.subdir("baseline")
	manifests, err := harness.Manifests{EchoAddr: b.echo.HTTPAddr, SecretYAML: b.pki.SecretYAML}.Write(filepath.Join(dir, "manifests"))
	if err != nil {
		return nil, err
	}
	bins := b.bins
	bins.Meshgate = b.baseline
	c, err := harness.StartCluster(r, harness.ClusterConfig{Bins: bins, Dir: dir, ManifestDir: manifests, Replicas: 1, NoMesh: true, ExtraArgs: quiet}, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return c.Replicas[0], nil
}

// handshakeRow is one s_time mode of scenario 2.
type handshakeRow struct {
	Mode                  string
	Meshgate, Nginx       sTimeResult
	MeshgateErr, NginxErr string
}

func (b *bench) handshakes() ([]handshakeRow, string) {
	r, mg, ng, err := b.single()
	defer r.Close()
	if err != nil {
		return nil, err.Error()
	}
	conf := filepath.Join(b.dir, "openssl-no-tickets.cnf")
	if err := os.WriteFile(conf, []byte(noTicketConf), 0o644); err != nil {
		return nil, err.Error()
	}
	var rows []handshakeRow
	for _, m := range []struct {
		mode  string
		reuse bool
		conf  string
	}{
		{"full (-new)", false, ""},
		{"resumed (-reuse)", true, ""},
		// Tickets off: meshgate answers on its TLS 1.2 session-ID path.
		{"full (-new), no tickets", false, conf},
		{"resumed (-reuse), no tickets", true, conf},
	} {
		row := handshakeRow{Mode: m.mode}
		for range b.rounds {
			mr, err := runSTime(b.ctx, mg.HTTPSAddr, m.reuse, m.conf, b.slice(), mg.Proc)
			if err != nil {
				row.MeshgateErr = err.Error()
			}
			row.Meshgate.add(mr)
			nr, err := runSTime(b.ctx, ng.Addr, m.reuse, m.conf, b.slice(), ng.Proc)
			if err != nil {
				row.NginxErr = err.Error()
			}
			row.Nginx.add(nr)
		}
		b.log("%s: meshgate %.0f/s, nginx %.0f/s", row.Mode, row.Meshgate.PerSec(), row.Nginx.PerSec())
		rows = append(rows, row)
	}
	return rows, ""
}

// trio is N replicas of one server kind behind HAProxy.
type trio struct {
	lb    *harness.HAProxy
	procs []*harness.Proc
}

func (t trio) cpu() int64 {
	var sum int64
	for _, p := range t.procs {
		n, _ := p.CPUTicks()
		sum += n
	}
	return sum
}

// meshgateSet starts n meshgate replicas behind HAProxy (PROXY v2) with
// their own manifests under dir; noMesh runs them without the session mesh
// (each replica keeps its own sessions, like nginx's per-node cache).
func (b *bench) meshgateSet(r *harness.Runner, dir string, n int, noMesh bool, lbIP string) (trio, error) {
	var t trio
	manifests, err := harness.Manifests{EchoAddr: b.echo.HTTPAddr, SecretYAML: b.pki.SecretYAML}.Write(filepath.Join(dir, "manifests"))
	if err != nil {
		return t, err
	}
	c, err := harness.StartCluster(r, harness.ClusterConfig{Bins: b.bins, Dir: dir, ManifestDir: manifests, Replicas: n,
		ProxyProtocol: true, NoMesh: noMesh, ExtraArgs: quiet}, 30*time.Second)
	if err != nil {
		return t, err
	}
	for _, rep := range c.Replicas {
		t.procs = append(t.procs, rep.Proc)
	}
	t.lb, err = harness.StartHAProxy(r, dir, "haproxy-meshgate", lbIP, c.HTTPSAddrs(), true)
	return t, err
}

// clusters starts n meshgate replicas and two sets of n nginx servers
// (session cache with tickets off, and per-node ticket keys), each set
// behind its own HAProxy sending PROXY v2. Closing the runner stops them.
func (b *bench) clusters(n int) (r *harness.Runner, mesh, ngCache, ngTickets trio, err error) {
	r = &harness.Runner{Out: b.r.Out}
	dir := b.subdir(fmt.Sprintf("n%d", n))
	if mesh, err = b.meshgateSet(r, dir, n, false, "127.0.0.30"); err != nil {
		return
	}
	for _, set := range []struct {
		t       *trio
		tickets bool
		name    string
		ip      string
	}{{&ngCache, false, "nginx-cache", "127.0.0.50"}, {&ngTickets, true, "nginx-tickets", "127.0.0.51"}} {
		ng, e := harness.StartNginxTrio(r, dir, set.name, n, b.pki, b.echo.HTTPAddr, set.tickets)
		if e != nil {
			return r, mesh, ngCache, ngTickets, e
		}
		for _, x := range ng {
			set.t.procs = append(set.t.procs, x.Proc)
		}
		if set.t.lb, e = harness.StartHAProxy(r, dir, "haproxy-"+set.name, set.ip, harness.NginxAddrs(ng), true); e != nil {
			return r, mesh, ngCache, ngTickets, e
		}
	}
	return
}

// loadResult is one side of a matrix cell: connections and server CPU.
type loadResult struct {
	Stats    harness.Stats
	CPUTicks int64
}

// add accumulates one round.
func (l *loadResult) add(o loadResult) {
	l.Stats.Add(o.Stats)
	l.CPUTicks += o.CPUTicks
}

// TicksPer1000 is server CPU ticks (10 ms) per 1000 connections.
func (l loadResult) TicksPer1000() float64 {
	if l.Stats.Conns == 0 {
		return 0
	}
	return float64(l.CPUTicks) * 1000 / float64(l.Stats.Conns)
}

// sweepPoint is one replica count of scenario 4.
type sweepPoint struct {
	Replicas                     int
	Mesh12, Mesh13               harness.Stats
	NginxTickets12, NginxCache13 harness.Stats
}

func (b *bench) sweep() ([]sweepPoint, string) {
	var pts []sweepPoint
	for n := 1; n <= b.maxReplicas && b.ctx.Err() == nil; n++ {
		r, mesh, ngCache, ngTickets, err := b.clusters(n)
		if err != nil {
			r.Close()
			return pts, fmt.Sprintf("%d replicas: %v", n, err)
		}
		p := sweepPoint{Replicas: n}
		p.Mesh12 = b.reconnect(tls.VersionTLS12, mesh.lb.Addr)
		p.Mesh13 = b.reconnect(tls.VersionTLS13, mesh.lb.Addr)
		p.NginxTickets12 = b.reconnect(tls.VersionTLS12, ngTickets.lb.Addr)
		p.NginxCache13 = b.reconnect(tls.VersionTLS13, ngCache.lb.Addr)
		r.Close()
		b.log("%d replicas: meshgate 1.2 %v 1.3 %v ; nginx 1.2 %v 1.3 %v", n, p.Mesh12, p.Mesh13, p.NginxTickets12, p.NginxCache13)
		pts = append(pts, p)
	}
	return pts, ""
}

func (b *bench) reconnect(version uint16, addr string) harness.Stats {
	cfg, err := b.pki.ClientConfig(version)
	if err != nil {
		return harness.Stats{Errors: 1, FirstErr: err}
	}
	return (&harness.Client{Config: cfg}).Reconnect(b.ctx, addr, b.reconnects, b.reconnects/10)
}
