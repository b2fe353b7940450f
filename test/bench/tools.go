package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// h2loadResult is one h2load run.
type h2loadResult struct {
	ReqPerSec float64
	Succeeded int
	Failed    int
	CPUTicks  int64 // server CPU during the run
}

var (
	reqPerSecRE = regexp.MustCompile(`finished in [0-9.]+[a-z]+, ([0-9.]+) req/s`)
	requestsRE  = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed`)
	status2xxRE = regexp.MustCompile(`status codes: (\d+) 2xx`)
)

// runH2load measures keep-alive requests per second against addr (TLS,
// SNI/authority harness.Host) for dur with clients connections and streams
// concurrent streams each; h1 selects HTTP/1.1. server is the process whose
// CPU is measured.
func runH2load(ctx context.Context, addr string, h1 bool, clients, streams int, dur time.Duration, server *harness.Proc) (h2loadResult, error) {
	args := []string{"-D", fmt.Sprint(int(dur.Seconds())), "-c", fmt.Sprint(clients), "-m", fmt.Sprint(streams), "-t", "1",
		"--connect-to", addr, harness.URL(addr, "/bench")}
	if h1 {
		args = append([]string{"--h1"}, args...)
	}
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	t0, err := server.CPUTicks()
	if err != nil {
		return h2loadResult{}, err
	}
	out, err := exec.CommandContext(ctx, "h2load", args...).CombinedOutput()
	t1, _ := server.CPUTicks()
	if err != nil {
		return h2loadResult{}, fmt.Errorf("h2load %s: %w\n%s", strings.Join(args, " "), err, tail(out))
	}
	r, err := parseH2load(out)
	r.CPUTicks = t1 - t0
	if err != nil {
		return r, err
	}
	return r, nil
}

// ticksPerRequest is the server CPU per successful request.
func (r h2loadResult) ticksPerRequest() float64 {
	if r.Succeeded == 0 {
		return 0
	}
	return float64(r.CPUTicks) / float64(r.Succeeded)
}

// add accumulates one of rounds equally long runs: request rates average,
// counts and CPU add up.
func (r *h2loadResult) add(o h2loadResult, rounds int) {
	r.ReqPerSec += o.ReqPerSec / float64(rounds)
	r.Succeeded += o.Succeeded
	r.Failed += o.Failed
	r.CPUTicks += o.CPUTicks
}

// parseH2load reads h2load's summary: requests per second, 2xx responses
// and failed requests. It fails when any is missing or nothing succeeded.
func parseH2load(out []byte) (h2loadResult, error) {
	var r h2loadResult
	m := reqPerSecRE.FindSubmatch(out)
	q := requestsRE.FindSubmatch(out)
	s := status2xxRE.FindSubmatch(out)
	if m == nil || q == nil || s == nil {
		return r, fmt.Errorf("h2load: unexpected output:\n%s", tail(out))
	}
	r.ReqPerSec, _ = strconv.ParseFloat(string(m[1]), 64)
	r.Succeeded, _ = strconv.Atoi(string(s[1]))
	r.Failed, _ = strconv.Atoi(string(q[2]))
	if r.Succeeded == 0 {
		return r, fmt.Errorf("h2load: no 2xx responses:\n%s", tail(out))
	}
	return r, nil
}

// sTimeResult is one `openssl s_time` run.
type sTimeResult struct {
	Conns    int
	Reused   int // connections s_time marked "r" (session reused)
	Seconds  float64
	CPUTicks int64
}

// add accumulates another run.
func (r *sTimeResult) add(o sTimeResult) {
	r.Conns += o.Conns
	r.Reused += o.Reused
	r.Seconds += o.Seconds
	r.CPUTicks += o.CPUTicks
}

// PerSec is handshakes per wall-clock second.
func (r sTimeResult) PerSec() float64 {
	if r.Seconds == 0 {
		return 0
	}
	return float64(r.Conns) / r.Seconds
}

// TicksPer1000 is server CPU ticks (10 ms) per 1000 handshakes.
func (r sTimeResult) TicksPer1000() float64 {
	if r.Conns == 0 {
		return 0
	}
	return float64(r.CPUTicks) * 1000 / float64(r.Conns)
}

var sTimeRE = regexp.MustCompile(`(\d+) connections in [0-9.]+s;`)

// noTicketConf is an OpenSSL configuration that turns the client's session
// tickets off (s_time has no -no_ticket flag): with it s_time sends no
// session_ticket extension and resumes by session ID.
const noTicketConf = `openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Options = -SessionTicket
`

// runSTime runs `openssl s_time -connect addr -tls1_2 -new|-reuse` for dur
// and measures the wall time itself (s_time's "real seconds" are whole
// seconds). s_time sends no SNI, so the server's default certificate answers.
// opensslConf, if not "", is the OPENSSL_CONF file s_time runs with.
func runSTime(ctx context.Context, addr string, reuse bool, opensslConf string, dur time.Duration, server *harness.Proc) (sTimeResult, error) {
	mode := "-new"
	if reuse {
		mode = "-reuse"
	}
	args := []string{"s_time", "-connect", addr, "-tls1_2", mode, "-time", fmt.Sprint(int(dur.Seconds()))}
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	t0, err := server.CPUTicks()
	if err != nil {
		return sTimeResult{}, err
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	if opensslConf != "" {
		cmd.Env = append(os.Environ(), "OPENSSL_CONF="+opensslConf)
	}
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	t1, _ := server.CPUTicks()
	if err != nil {
		return sTimeResult{}, fmt.Errorf("openssl %s: %w\n%s", strings.Join(args, " "), err, tail(out))
	}
	r, err := parseSTime(out, reuse)
	r.Seconds = elapsed.Seconds()
	r.CPUTicks = t1 - t0
	return r, err
}

// parseSTime reads the connection count of s_time's last summary and, for
// -reuse, counts the "r" (reused) progress marks of the timed loop.
func parseSTime(out []byte, reuse bool) (sTimeResult, error) {
	var r sTimeResult
	all := sTimeRE.FindAllSubmatch(out, -1)
	if len(all) == 0 {
		return r, fmt.Errorf("s_time: unexpected output:\n%s", tail(out))
	}
	r.Conns, _ = strconv.Atoi(string(all[len(all)-1][1]))
	if reuse {
		// Progress marks: "r" reused, "*" new session.
		if i := strings.LastIndex(string(out), "starting\n"); i >= 0 {
			marks, _, _ := strings.Cut(string(out[i+len("starting\n"):]), "\n")
			r.Reused = min(strings.Count(marks, "r"), r.Conns)
		}
	}
	if r.Conns == 0 {
		return r, fmt.Errorf("s_time: no connections:\n%s", tail(out))
	}
	return r, nil
}

// tail returns the last 1500 bytes of b.
func tail(b []byte) string {
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}

// cmdOut runs a command and returns its trimmed output, or "" on error.
func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
