package kube

// Needs root and iproute2 (ip): the backend network namespaces below are
// created with ip netns; testkit.RequireRoot checks both and fails loudly.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshgate/meshgate/internal/testkit"
)

// backendNetns is a network namespace joined to the host by a veth pair,
// for backends whose addresses go into EndpointSlices: the API server
// refuses loopback addresses there, so the test backends live on
// 198.19.N.0/24 (inside the 198.18.0.0/15 benchmarking range) in a
// namespace the test creates and deletes. Needs root and iproute2 (both
// present in CI: hack/install-deps.sh); missing either fails the test.
type backendNetns struct {
	name   string
	prefix string // "198.19.N."
	peer   string // interface name inside the namespace
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newBackendNetns creates the namespace with the host end at prefix.1 and
// the namespace end at prefix.2; more addresses can be added with addAddr.
func newBackendNetns(t testing.TB) *backendNetns {
	t.Helper()
	testkit.RequireRoot(t, "backend network namespaces", "ip")
	id := os.Getpid()%9000 + 1000
	n := &backendNetns{name: fmt.Sprintf("mgk%d", id), prefix: fmt.Sprintf("198.19.%d.", id%250+1)}
	host, peer := fmt.Sprintf("mgk%dh", id), fmt.Sprintf("mgk%dn", id)
	// Leftovers of a killed run with the same pid are removed first.
	_ = exec.Command("ip", "link", "del", host).Run()
	_ = exec.Command("ip", "netns", "del", n.name).Run()
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", n.name).Run()
	})
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	run(t, "ip", "link", "set", peer, "netns", n.name)
	run(t, "ip", "addr", "add", n.prefix+"1/24", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "netns", "exec", n.name, "ip", "addr", "add", n.prefix+"2/24", "dev", peer)
	run(t, "ip", "netns", "exec", n.name, "ip", "link", "set", peer, "up")
	run(t, "ip", "netns", "exec", n.name, "ip", "link", "set", "lo", "up")
	n.peer = peer
	return n
}

// listen opens a TCP listener on addr inside the namespace: the socket is
// created on an OS thread switched into the namespace, and keeps belonging
// to it after the thread switches back.
func (n *backendNetns) listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is only unlocked once back in the original namespace;
		// otherwise the runtime discards it when this goroutine exits.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + n.name)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		ln, lerr := net.Listen("tcp", addr)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{ln: ln, err: fmt.Errorf("setns back: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln: ln, err: lerr}
	}()
	r := <-ch
	if r.err != nil {
		if r.ln != nil {
			r.ln.Close()
		}
		t.Fatalf("listen %s in netns %s: %v", addr, n.name, r.err)
	}
	return r.ln
}

// serveBackend runs an HTTP backend inside the namespace on addr that
// answers "backend <addr>".
func (n *backendNetns) serveBackend(t testing.TB, addr string) {
	t.Helper()
	ln := n.listen(t, addr)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "backend %s", addr)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

// addAddr adds prefix+suffix to the namespace end of the veth pair.
func (n *backendNetns) addAddr(t testing.TB, suffix string) string {
	t.Helper()
	run(t, "ip", "netns", "exec", n.name, "ip", "addr", "add", n.prefix+suffix+"/24", "dev", n.peer)
	return n.prefix + suffix
}
