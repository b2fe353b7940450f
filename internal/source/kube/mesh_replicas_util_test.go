package kube

// Needs root and iproute2 (ip): newMeshAddrs adds addresses on a link it
// creates; testkit.RequireRoot checks both and fails loudly.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/meshgate/meshgate/internal/replica"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// Helpers of TestMeshReplicas: three replicas, each a controller feeding a
// replica.Replica as `meshgate run` wires one (cmd/meshgate/kube.go),
// sharing the suite's API server.

// meshReplica is one replica: controller and data plane (with its session
// mesh node).
type meshReplica struct {
	name   string
	holder *routing.Holder
	ctl    *Controller
	rep    *replica.Replica
}

// newMeshAddrs puts three local, non-loopback addresses 198.18.N.1-3 on a
// link the test creates in the root network namespace (the API server
// refuses loopback addresses in EndpointSlices) and removes it when the
// test ends. A dummy link is used where the kernel has the module, else a
// veth pair (both ends in the root namespace). Needs root and iproute2.
func newMeshAddrs(t *testing.T) []string {
	t.Helper()
	testkit.RequireRoot(t, "the mesh addresses", "ip")
	pid := os.Getpid()
	link := fmt.Sprintf("mgmr%d", pid)
	_ = exec.Command("ip", "link", "del", link).Run() // leftover of a killed run with the same pid
	if err := exec.Command("ip", "link", "add", link, "type", "dummy").Run(); err != nil {
		run(t, "ip", "link", "add", link, "type", "veth", "peer", "name", link+"p")
		run(t, "ip", "link", "set", link+"p", "up")
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", link).Run() })
	addrs := make([]string, 3)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("198.18.%d.%d", pid%200+50, i+1)
		run(t, "ip", "addr", "add", addrs[i]+"/32", "dev", link)
	}
	run(t, "ip", "link", "set", link, "up")
	return addrs
}

// startMeshController starts a controller until the test ends; cleanup
// waits (bounded) for Start to return.
func startMeshController(t *testing.T, opts Options) *Controller {
	t.Helper()
	opts.Logger = testr.NewWithOptions(t, testr.Options{Verbosity: 0})
	c, err := New(testCfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	testkit.Background(t, "controller", 20*time.Second, c.Start)
	return c
}

// runReplica runs r until the test ends and waits until its listeners are
// bound; cleanup waits (bounded) for Run to return, i.e. for the drain and
// every goroutine of the replica.
func runReplica(t *testing.T, r *replica.Replica) {
	t.Helper()
	stopped := testkit.Background(t, "replica", 20*time.Second, r.Run)
	select {
	case <-r.Started():
	case <-stopped:
		t.Fatal("replica stopped before serving (its error is reported at cleanup)")
	}
}

// waitUntil polls cond until it holds or deadline passes.
func waitUntil(t *testing.T, deadline time.Time, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, time.Until(deadline), what, cond)
}

// issuerCache is a client session cache that remembers which replica
// issued each session it holds (the replica the connection that stored it
// went to) and which issuer's session the last Get handed out. One
// connection at a time.
type issuerCache struct {
	inner   tls.ClientSessionCache
	mu      sync.Mutex
	issuer  map[*tls.ClientSessionState]int
	current int // replica the connection in progress goes to
	offered int // issuer of the session offered by that connection; -1: none
}

func newIssuerCache() *issuerCache {
	return &issuerCache{inner: tls.NewLRUClientSessionCache(8), issuer: map[*tls.ClientSessionState]int{}, offered: -1}
}

// begin starts a connection to replica r.
func (c *issuerCache) begin(r int) {
	c.mu.Lock()
	c.current, c.offered = r, -1
	c.mu.Unlock()
}

func (c *issuerCache) offeredBy() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offered
}

func (c *issuerCache) Get(key string) (*tls.ClientSessionState, bool) {
	s, ok := c.inner.Get(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, known := c.issuer[s]; ok && known {
		c.offered = i
	}
	return s, ok
}

func (c *issuerCache) Put(key string, s *tls.ClientSessionState) {
	c.mu.Lock()
	if s != nil {
		c.issuer[s] = c.current
	}
	c.mu.Unlock()
	c.inner.Put(key, s)
}

// meshReplicaGet does one TLS connection to addr with cfg and one HTTP/1.1
// request on it (so that a TLS 1.3 NewSessionTicket is read), and returns
// whether the handshake resumed and the response status.
func meshReplicaGet(addr string, cfg *tls.Config) (resumed bool, status int, err error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return false, 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return false, 0, err
	}
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", cfg.ServerName); err != nil {
		return false, 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return false, 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return conn.ConnectionState().DidResume, resp.StatusCode, err
}

// resumeStats summarises a round-robin run.
type resumeStats struct {
	attempts, resumed int       // connections after the first
	pairs             [3][3]int // resumed connections by [issuer][replica]
	statuses          map[int]int
}

// roundRobin connects n times over addrs in turn with zero think time,
// sharing cache, and counts resumptions after the first connection.
func roundRobin(t *testing.T, addrs []string, base *tls.Config, n int) resumeStats {
	t.Helper()
	cache := newIssuerCache()
	cfg := base.Clone()
	cfg.ClientSessionCache = cache
	st := resumeStats{statuses: map[int]int{}}
	for i := range n {
		r := i % len(addrs)
		cache.begin(r)
		resumed, status, err := meshReplicaGet(addrs[r], cfg)
		if err != nil {
			t.Fatalf("connection %d to replica %d: %v", i, r+1, err)
		}
		st.statuses[status]++
		if i == 0 {
			continue
		}
		st.attempts++
		if resumed {
			st.resumed++
			if by := cache.offeredBy(); by >= 0 {
				st.pairs[by][r]++
			}
		}
	}
	return st
}

// meshReplicaFrames name the functions whose goroutines belong to the
// replicas: data planes and their session mesh nodes, the peer adapter and
// the controllers' own runnables.
var meshReplicaFrames = []string{
	"meshgate/internal/sessionmesh", "meshgate/internal/dataplane/", "meshgate/internal/replica",
	"kube.meshReplicaPeers", "kube.(*handler)", "kube.(*statusWriter)", "kube.(*caEnsurer)",
}

// checkReplicaGoroutines registers a cleanup, run after every cleanup
// registered later (LIFO), that fails the test if goroutines of the
// replicas are still running 5 s after they were stopped.
func checkReplicaGoroutines(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		var left []string
		_ = testkit.Until(5*time.Second, func() bool { left = replicaGoroutines(); return len(left) == 0 })
		for _, g := range left {
			t.Errorf("goroutine left running:\n%s", g)
		}
	})
}

func replicaGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "checkReplicaGoroutines") { // this cleanup
			continue
		}
		for _, f := range meshReplicaFrames {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
