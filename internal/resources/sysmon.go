package resources

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// The Go runtime's system monitor (sysmon) is a thread that sleeps 20 µs,
// checks the scheduler, and doubles its sleep only after 50 rounds with
// nothing to do (up to 10 ms). When every P is idle it sleeps on a note
// instead, and the next system call that finds it so wakes it and starts it
// over at 20 µs (runtime/proc.go, sysmon; golang/go#18236). A replica
// behind a round-robin balancer goes idle between connections, so every
// connection restarted that ramp: some 50 sleeps and wake-ups of one more
// thread per connection and replica, each a context switch, which under
// virtualisation costs more than a TLS 1.3 resumption's X25519. pprof does
// not see it (sysmon runs no goroutine, so it has no profiling timer); perf
// does (docs/datapath.md, "What a connection costs").
//
// The runtime has no setting for sysmon's period, but it never deep-sleeps
// while the scheduler trace is on (GODEBUG schedtrace > 0): sysmon then
// backs off to its 10 ms period when there is nothing to retake and stays
// there (about 100 wake-ups a second on an idle replica, instead of some 50
// per connection). SysmonGODEBUG turns the trace on with the largest period
// the runtime takes, 2^31-1 ms (24.8 days), so it prints nothing in
// practice: the first line is due when the monotonic clock (time since
// boot) passes that period, i.e. on a host up for more than 24.8 days, one
// "SCHED" line on standard error at start and then one every 24.8 days;
// and a fatal runtime error adds a scheduler dump to its crash report.

// SysmonGODEBUG is the GODEBUG setting KeepSysmonAwake adds.
const SysmonGODEBUG = "schedtrace=2147483647"

// sysmonEnv returns environ with SysmonGODEBUG added to GODEBUG, and
// whether that changed anything: an environment whose GODEBUG names
// schedtrace already (e.g. GODEBUG=schedtrace=0, Go's default behaviour)
// is left as it is.
func sysmonEnv(environ []string) ([]string, bool) {
	out := make([]string, 0, len(environ)+1)
	found := false
	for _, kv := range environ {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			out = append(out, kv)
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if strings.HasPrefix(strings.TrimSpace(f), "schedtrace=") {
				return environ, false
			}
		}
		found = true
		if v == "" {
			out = append(out, "GODEBUG="+SysmonGODEBUG)
		} else {
			out = append(out, "GODEBUG="+v+","+SysmonGODEBUG)
		}
	}
	if !found {
		out = append(out, "GODEBUG="+SysmonGODEBUG)
	}
	return out, true
}

// SysmonAwake reports whether this process runs with GODEBUG's schedtrace
// set above 0 (sysmon never deep-sleeps), as after KeepSysmonAwake.
func SysmonAwake() bool {
	_, changed := sysmonEnv(os.Environ())
	if changed {
		return false
	}
	for _, f := range strings.Split(os.Getenv("GODEBUG"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(f), "schedtrace="); ok {
			return v != "" && v != "0" && !strings.HasPrefix(v, "-")
		}
	}
	return false
}

// KeepSysmonAwake re-executes the running binary in place (same process
// id, arguments and environment, plus SysmonGODEBUG in GODEBUG) unless
// GODEBUG names schedtrace already. The runtime reads schedtrace only at
// start, so this must run first in main, before any goroutine, file or
// listener exists. On success it does not return; it returns nil when
// nothing needed changing and an error when the re-exec failed (the
// process then goes on with Go's default sysmon).
func KeepSysmonAwake() error {
	env, changed := sysmonEnv(os.Environ())
	if !changed {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("resources: re-exec with %s: %w", SysmonGODEBUG, err)
	}
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("resources: re-exec %s with %s: %w", exe, SysmonGODEBUG, err)
	}
	return nil // not reached
}
