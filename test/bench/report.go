package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/resources"
)

// report is everything one run measured; markdown renders it.
type report struct {
	Machine               []string
	Commit                string // what the run's meshgate was built from (--commit)
	RunNote               string // how the run was split or made, if not by one make bench (--run-note)
	Started, Finished     time.Time
	LoadBefore, LoadAfter string
	KeepAlive             []keepAliveRow
	KeepAliveErr          string
	Handshakes            []handshakeRow
	HandshakesErr         string
	Matrix                *matrix
	MatrixErr             string
	Runtime               *matrix // the target scenarios under runtime settings
	RuntimeErr            string
	Sweep                 []sweepPoint
	SweepErr              string
	SVGName               string
	Duration              time.Duration // of each h2load and s_time figure, per server
	Rounds                int           // alternations per figure
	CPUs                  int
	BaselineLabel         string // set when scenario 1 ran a --baseline binary too
}

func describeMachine() []string {
	var m []string
	m = append(m, "CPUs (nproc): "+cmdOut("nproc"))
	for _, l := range strings.Split(cmdOut("lscpu"), "\n") {
		if strings.HasPrefix(l, "Model name:") || strings.HasPrefix(l, "Thread(s) per core:") || strings.HasPrefix(l, "Hypervisor vendor:") {
			m = append(m, strings.Join(strings.Fields(l), " "))
		}
	}
	for _, l := range strings.Split(cmdOut("free", "-m"), "\n") {
		if strings.HasPrefix(l, "Mem:") {
			if f := strings.Fields(l); len(f) > 1 {
				m = append(m, "Memory: "+f[1]+" MiB")
			}
		}
	}
	m = append(m, "Kernel: "+cmdOut("uname", "-sr"), "Go: "+runtime.Version())
	nginx, _ := exec.Command("nginx", "-v").CombinedOutput()
	m = append(m, "nginx: "+strings.TrimSpace(strings.TrimPrefix(string(nginx), "nginx version: ")))
	m = append(m, "HAProxy: "+firstLine(cmdOut("haproxy", "-v")), "OpenSSL: "+cmdOut("openssl", "version"),
		"h2load: "+firstLine(cmdOut("h2load", "--version")))
	return m
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// errCell shortens an error for a table cell; the full text goes below it.
func errCell(s string) string {
	if s == "" {
		return ""
	}
	return "failed (see notes)"
}

func (r *report) markdown() string {
	var b strings.Builder
	var notes []string
	note := func(what, err string) {
		if err != "" {
			notes = append(notes, fmt.Sprintf("- **%s** could not run: `%s`", what, oneLine(err)))
		}
	}
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# meshgate benchmarks\n\n")
	w("Written by `make bench` (hack/bench.sh → `go run ./test/bench`) from one run; nothing in this file is typed in by hand.\n")
	w("meshgate and nginx run side by side in the same run, on the same machine, against the same echo backend (test/echo), so each figure is read as a ratio.\n\n")
	w("Run: %s → %s (UTC). Load average before: %s, after: %s.", r.Started.Format(time.RFC3339), r.Finished.Format(time.RFC3339), r.LoadBefore, r.LoadAfter)
	if r.Commit != "" {
		w(" meshgate built from %s.", r.Commit)
	}
	if r.RunNote != "" {
		w(" %s", r.RunNote)
	}
	w("\n\n")
	w("## Machine\n\n")
	for _, m := range r.Machine {
		w("- %s\n", m)
	}
	if busy(r.LoadBefore, r.CPUs) || busy(r.LoadAfter, r.CPUs) {
		w("\n**The machine was busy with other jobs during this run** (load average above its %d CPUs), so every absolute figure below is depressed and noisy. Each side-by-side figure alternates meshgate and nginx %d times so that load swings hit both sides; read the ratios, and re-run `make bench` on a quiet machine for absolute numbers.\n", r.CPUs, r.Rounds)
	}
	w("\nClients, servers, HAProxy and the echo backend all share these CPUs, so absolute numbers are low and noisy; the ratios are the point. Server CPU is utime+stime from /proc/<pid>/stat of every process of the server (nginx master and workers; each meshgate process), in ticks of 10 ms.\n\n")

	w("## 1. Keep-alive HTTPS requests per second (h2load)\n\n")
	w("One meshgate (standalone, no mesh) vs one nginx (`worker_processes auto`, upstream keepalive), each proxying to the echo backend. h2load, 1 thread, %s per server in %d alternating rounds; req/s is the mean of the rounds.\n\n", durNote(r), r.Rounds)
	if len(r.KeepAlive) > 0 {
		w("| protocol | clients × streams | meshgate req/s | nginx req/s | meshgate / nginx | server CPU ticks per 10k req (meshgate / nginx) |\n|---|---|---|---|---|---|\n")
		for _, k := range r.KeepAlive {
			w("| %s | %d × %d | %s | %s | %s | %s / %s |\n", k.Proto, k.Clients, k.Streams,
				num(k.Meshgate.ReqPerSec, k.MeshgateErr), num(k.Nginx.ReqPerSec, k.NginxErr), ratio(k.Meshgate.ReqPerSec, k.Nginx.ReqPerSec),
				per(k.Meshgate.CPUTicks, k.Meshgate.Succeeded, 10000), per(k.Nginx.CPUTicks, k.Nginx.Succeeded, 10000))
			note("h2load "+k.Proto+" meshgate", k.MeshgateErr)
			note("h2load "+k.Proto+" nginx", k.NginxErr)
		}
	}
	if r.BaselineLabel != "" && len(r.KeepAlive) > 0 {
		w("\nBefore and after, same run (\"before\" is meshgate built from %s, run as a third side in the same alternating rounds):\n\n", r.BaselineLabel)
		w("| protocol | before / nginx req/s | after / nginx req/s | CPU per request before / nginx | CPU per request after / nginx |\n|---|---|---|---|---|\n")
		for _, k := range r.KeepAlive {
			w("| %s | %s | %s | %s | %s |\n", k.Proto, ratio(k.Baseline.ReqPerSec, k.Nginx.ReqPerSec), ratio(k.Meshgate.ReqPerSec, k.Nginx.ReqPerSec),
				ratio(k.Baseline.ticksPerRequest(), k.Nginx.ticksPerRequest()), ratio(k.Meshgate.ticksPerRequest(), k.Nginx.ticksPerRequest()))
			note("h2load "+k.Proto+" baseline", k.BaselineErr)
		}
	}
	note("keep-alive scenario", r.KeepAliveErr)

	w("\n## 2. Full vs resumed TLS 1.2 handshakes (openssl s_time, RSA-2048)\n\n")
	w("`openssl s_time -tls1_2 -new` / `-reuse` (one connection at a time, no SNI, so the default certificate answers) against one meshgate and one nginx (session cache, tickets off). With tickets (OpenSSL's default) s_time resumes by stateful ticket on meshgate (crypto/tls) and by session ID on nginx; the \"no tickets\" rows run s_time with `Options = -SessionTicket` (OPENSSL_CONF), so it resumes by session ID on both and meshgate answers on its TLS 1.2 session-ID path (internal/tls12): compare those rows' CPU with nginx (target ≤ 1.2× on resumed handshakes) and the no-tickets full row with the first row (the session-ID path's full handshake vs crypto/tls's). %s per server in %d alternating rounds.\n\n", durNote(r), r.Rounds)
	if len(r.Handshakes) > 0 {
		w("| handshakes | meshgate /s | nginx /s | meshgate / nginx | server CPU ticks per 1000 (meshgate / nginx) | resumed marks (meshgate / nginx) |\n|---|---|---|---|---|---|\n")
		for _, h := range r.Handshakes {
			reused := "–"
			if strings.HasPrefix(h.Mode, "resumed") {
				reused = fmt.Sprintf("%d/%d / %d/%d", h.Meshgate.Reused, h.Meshgate.Conns, h.Nginx.Reused, h.Nginx.Conns)
			}
			w("| %s | %s | %s | %s | %.1f / %.1f | %s |\n", h.Mode, num(h.Meshgate.PerSec(), h.MeshgateErr), num(h.Nginx.PerSec(), h.NginxErr),
				ratio(h.Meshgate.PerSec(), h.Nginx.PerSec()), h.Meshgate.TicksPer1000(), h.Nginx.TicksPer1000(), reused)
			note("s_time "+h.Mode+" meshgate", h.MeshgateErr)
			note("s_time "+h.Mode+" nginx", h.NginxErr)
		}
	}
	note("handshake scenario", r.HandshakesErr)

	if r.Matrix != nil || r.MatrixErr != "" {
		r.matrixIntro(w)
		if r.Matrix != nil {
			w("%s", r.Matrix.markdown(note))
		}
	}
	note("matrix", r.MatrixErr)
	if r.Runtime != nil || r.RuntimeErr != "" {
		w("\n### Runtime settings\n\n")
		w("The run's meshgate under Go runtime settings given in its environment (each a trio of its own, the same load and rounds as above, on the four target scenarios): the default (GOMAXPROCS following the process's CPU use from 1 up to the CPUs or the cgroup limit, internal/resources' Procs; GOGC %d, GOMEMLIMIT from the cgroup memory limit) against GOMAXPROCS=1 and other GC targets. Three replicas share two CPUs here, so GOMAXPROCS=1 is one CPU per replica's share. Each ratio column is nginx's CPU per connection over that side's.\n\n", resources.DefaultGCPercent)
		if r.Runtime != nil {
			w("%s", r.Runtime.markdown(note))
		}
	}
	note("runtime settings", r.RuntimeErr)

	w("\n## 4. Cross-replica resumption rate, 1..N replicas\n\n")
	w("One client, one cached session, sequential reconnects with zero think time through HAProxy round robin (so consecutive connections land on different replicas whenever there are two or more).\n\n")
	if len(r.Sweep) > 0 {
		w("![resumption rate by replica count](%s)\n\n", r.SVGName)
		w("| replicas | meshgate TLS 1.2 | meshgate TLS 1.3 | nginx TLS 1.2 (per-node tickets) | nginx TLS 1.3 (per-node cache) |\n|---|---|---|---|---|\n")
		for _, p := range r.Sweep {
			w("| %d | %s | %s | %s | %s |\n", p.Replicas, p.Mesh12, p.Mesh13, p.NginxTickets12, p.NginxCache13)
		}
	}
	note("replica sweep", r.SweepErr)
	if len(notes) > 0 {
		w("\n## Notes from this run\n\n%s\n", strings.Join(notes, "\n"))
	}
	w("\n## Reproduce\n\n```\nmake bench            # hack/bench.sh: installs Debian tools, builds, runs (the Run line above says how long this run took; bound: 20 min + L4 and go test -bench)\nBENCH_BASELINE=c73b446 make bench   # also a build of that revision as a side (before/after)\ngo run ./test/bench --quick --sections matrix --out /tmp/b.md --svg /tmp/b.svg   # the four target scenarios\n```\n")
	return b.String()
}

// matrixIntro writes section 3's heading and what its figures mean.
func (r *report) matrixIntro(w func(string, ...any)) {
	m := r.Matrix
	if m == nil {
		m = &matrix{}
	}
	w("\n## 3. Headline: three replicas behind a round-robin balancer, per connection\n\n")
	w("Three replicas per side, each trio behind its own HAProxy (TCP mode, `balance roundrobin`, `send-proxy-v2`): meshgate (this build) sharing sessions over the mesh")
	if len(m.Sides) > 2 {
		w(", %s (other meshgate builds or runtime settings, same manifests)", strings.Join(m.Sides[1:len(m.Sides)-1], ", "))
	}
	w(", and nginx with per-node session state. Each client keeps one TLS session for the host (like independent browsers), reconnects with zero think time and sends one HTTP/1.1 request per connection; with 16 clients about 1/3 of nginx's reconnects land on the node that issued the session by chance, with one client none do (strict round robin). ")
	w("Every scenario alternates the sides %d times, %s per side per round, rotating the order each round. Server CPU is every listening process of the trio (the three meshgate processes; the nginx masters and workers), in ticks of 10 ms from /proc; the ratio **nginx / meshgate** is nginx's CPU per connection over meshgate's, so above 1 meshgate is cheaper. ", m.Rounds, m.Dur)
	w("The client is Go's crypto/tls: \"default\" groups are Go's (X25519MLKEM768, X25519, P-256, P-384), from which meshgate's default policy picks the post-quantum hybrid and OpenSSL 3.0 (no ML-KEM) X25519; \"X25519 only\" is the client offering X25519 alone. Go's TLS 1.2 client resumes with tickets only, so TLS 1.2 runs against nginx with per-node ticket keys (nginx's default) and TLS 1.3 against nginx's per-node session cache with tickets off. ECDSA rows use a P-256 certificate on both sides (another SNI name on the same servers).")
	if m.Quick {
		w(" **Quick run** (`--quick`): the four target scenarios only.")
	}
	w("\n\n")
}

// busy reports whether a /proc/loadavg triple's first figure exceeds cpus.
func busy(load string, cpus int) bool {
	var l1 float64
	if _, err := fmt.Sscan(load, &l1); err != nil {
		return false
	}
	return cpus > 0 && l1 > float64(cpus)
}

func durNote(r *report) string {
	return r.Duration.String()
}

func num(v float64, err string) string {
	if err != "" {
		return errCell(err)
	}
	return fmt.Sprintf("%.0f", v)
}

func per(ticks int64, n, per int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(ticks)*float64(per)/float64(n))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return strings.ReplaceAll(s, "`", "'")
}
