package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// reconnects is how many round-robin reconnects each Go-client check makes
// after its priming connection (bounded: a few seconds each). Go's client
// offers the newest ticket, issued by the previous replica an instant
// before, so every reconnect is exposed to the replication race that
// checkResumed's bound is about.
const reconnects = 999

// sClient runs `openssl s_client` against addr (an HAProxy per-replica
// frontend), sending one HTTP request and reading until the server closes,
// so that a TLS 1.3 client receives the NewSessionTicket before exiting.
// sessArg is "-sess_out" or "-sess_in". It returns the output.
func sClient(t *testing.T, addr, version, sessArg, sessFile string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-servername", harness.Host,
		"-CAfile", env.PKI.CACert, "-verify_return_error", version, sessArg, sessFile, "-ign_eof")
	cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: " + harness.Host + "\r\nConnection: close\r\n\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client %s %s %s: %v\n%s", addr, version, sessArg, err, out)
	}
	return string(out)
}

// TestOpenSSLCrossReplicaResumption takes a session from replica 1 with the
// openssl binary and resumes it on replicas 2 and 3.
func TestOpenSSLCrossReplicaResumption(t *testing.T) {
	for _, tc := range []struct{ flag, name string }{
		{"-tls1_2", "TLSv1.2"},
		{"-tls1_3", "TLSv1.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := filepath.Join(t.TempDir(), "sess.pem")
			out := sClient(t, env.MeshLB.Direct[0], tc.flag, "-sess_out", sess)
			if !strings.Contains(out, "New, "+tc.name) {
				t.Fatalf("first connection not a new %s session:\n%s", tc.name, out)
			}
			if st, err := os.Stat(sess); err != nil || st.Size() == 0 {
				t.Fatalf("no session written (%v); s_client output:\n%s", err, out)
			}
			for i, addr := range env.MeshLB.Direct[1:] {
				out := sClient(t, addr, tc.flag, "-sess_in", sess)
				if !strings.Contains(out, "Reused, "+tc.name) {
					t.Errorf("replica %d did not resume the session from replica 1:\n%s", i+2, out)
				}
				if !strings.Contains(out, "HTTP/1.1 200") {
					t.Errorf("replica %d: no 200 response:\n%s", i+2, out)
				}
			}
		})
	}
}

// TestGoClientRoundRobinResumption reconnects through HAProxy's round robin
// with zero think time and one cached session, so nearly every connection
// lands on a different replica than the one that issued the session.
// meshgate must resume (almost) all of them; nginx, with per-node session
// caches, (almost) none. Go's TLS 1.2 client resumes with tickets only, so
// the TLS 1.2 nginx figure comes from a trio with per-node ticket keys
// (nginx's default), the TLS 1.3 one from the shared env trio
// (session cache, tickets off).
func TestGoClientRoundRobinResumption(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nginxTicketsLB := startNginxTicketsTrio(t)
	for _, tc := range []struct {
		name    string
		version uint16
		nginxLB string
	}{
		{"TLSv1.2", tls.VersionTLS12, nginxTicketsLB},
		{"TLSv1.3", tls.VersionTLS13, env.NginxLB.Addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			misses := missesByReason(t, env.Cluster.Replicas)
			mesh := reconnect(t, ctx, tc.version, env.MeshLB.Addr)
			ngx := reconnect(t, ctx, tc.version, tc.nginxLB)
			t.Logf("%s round robin over 3 replicas: meshgate: %v ; nginx: %v", tc.name, mesh, ngx)
			if mesh.Errors > 0 || ngx.Errors > 0 {
				t.Fatalf("connection errors: meshgate %v, nginx %v", mesh.FirstErr, ngx.FirstErr)
			}
			checkResumed(t, "meshgate", mesh.Resumed, mesh.Conns, env.Cluster.Replicas, misses)
			if ngx.Rate() > 10 {
				t.Errorf("nginx resumed %v across per-node caches; the comparison is broken", ngx)
			}
		})
	}
}

func reconnect(t *testing.T, ctx context.Context, version uint16, addr string) harness.Stats {
	t.Helper()
	cfg, err := env.PKI.ClientConfig(version)
	if err != nil {
		t.Fatal(err)
	}
	return (&harness.Client{Config: cfg}).Reconnect(ctx, addr, reconnects, 5)
}

// startNginxTicketsTrio starts three nginx servers with session tickets on
// (each its own random key) behind HAProxy and returns the balancer address.
func startNginxTicketsTrio(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ng, err := harness.StartNginxTrio(t, dir, "nginx-tickets", 3, env.PKI, env.Echo.HTTPAddr, true)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := harness.StartHAProxy(t, dir, "haproxy-nginx-tickets", "127.0.0.51", harness.NginxAddrs(ng), true)
	if err != nil {
		t.Fatal(err)
	}
	return lb.Addr
}

// TestKillReplica SIGKILLs one of three replicas while a client reconnects
// round robin: connections keep resuming on the survivors. Then it restarts
// the replica and, once /readyz is 200, checks that sessions issued before
// the restart (by replica 1, and by the killed replica itself) resume on it.
// It uses its own cluster, so the shared env stays intact.
func TestKillReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster, lb := balancedCluster(t, t.TempDir(), env.Manifest, "haproxy-kill", "127.0.0.31")
	outer := t // owns the restarted replica, so it outlives the subtest
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLSv1.2", tls.VersionTLS12}, {"TLSv1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			victim := cluster.Replicas[1]
			// Sessions issued before the kill, by replica 1 and by the victim.
			fromR1, fromVictim := newClient(t, v.version), newClient(t, v.version)
			mustDo(t, ctx, fromR1, lb.Direct[0])
			mustDo(t, ctx, fromVictim, lb.Direct[1])

			rr := newClient(t, v.version)
			before := rr.Reconnect(ctx, lb.Addr, 60, 0)
			victim.Proc.Kill()
			after := rr.Reconnect(ctx, lb.Addr, 120, 10)
			t.Logf("%s before SIGKILL of %s: %v ; after: %v", v.name, victim.Name, before, after)
			// One miss is tolerated per run: a session issued an instant
			// before the next connection may not have replicated yet.
			if before.Errors > 0 || before.Conns-before.Resumed > 1 {
				t.Errorf("before kill: %v", before)
			}
			// A connection HAProxy had already sent to the victim may fail;
			// every connection that succeeded must have resumed, but for at most one
			// session the victim issued just before dying, if it had not
			// replicated yet.
			if after.Errors > 3 || after.Conns < 100 || after.Conns-after.Resumed > 1 {
				t.Errorf("after kill: %v (want all but at most one successful connection resumed, <= 3 errors)", after)
			}

			if err := victim.Start(outer); err != nil {
				t.Fatal(err)
			}
			if err := victim.WaitReady(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			for name, c := range map[string]*harness.Client{"replica-1": fromR1, victim.Name + " (before its restart)": fromVictim} {
				resumed, err := c.Do(ctx, lb.Direct[1])
				if err != nil {
					t.Fatalf("restarted %s: %v", victim.Name, err)
				}
				if !resumed {
					t.Errorf("restarted %s did not resume a session issued by %s before the restart", victim.Name, name)
				}
			}
			again := rr.Reconnect(ctx, lb.Addr, 60, 0)
			t.Logf("%s after restart: %v", v.name, again)
			if again.Errors > 0 || again.Conns-again.Resumed > 1 {
				t.Errorf("after restart: %v", again)
			}
		})
	}
}

func newClient(t *testing.T, version uint16) *harness.Client {
	t.Helper()
	cfg, err := env.PKI.ClientConfig(version)
	if err != nil {
		t.Fatal(err)
	}
	return &harness.Client{Config: cfg}
}

func mustDo(t *testing.T, ctx context.Context, c *harness.Client, addr string) {
	t.Helper()
	if _, err := c.Do(ctx, addr); err != nil {
		t.Fatal(fmt.Errorf("priming via %s: %w", addr, err))
	}
}

// stickyCache is a client session cache that offers the last session it
// stored for any server name: a client trying to resume a session on a
// virtual host it was not issued for. Safe for concurrent use.
type stickyCache struct {
	mu   sync.Mutex
	last *tls.ClientSessionState
}

func (c *stickyCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.last != nil
}

func (c *stickyCache) Put(_ string, cs *tls.ClientSessionState) {
	if cs == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = cs
}

// TestSessionBoundToVirtualHost offers a session issued for Host when
// connecting to OtherHost (same certificate, same backend): meshgate must
// refuse to resume it (a full handshake, the request still served), on the
// issuing replica and on another one, while the same session still resumes
// for Host.
func TestSessionBoundToVirtualHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLSv1.2", tls.VersionTLS12}, {"TLSv1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			cache := &stickyCache{}
			client := func(host string) *harness.Client {
				cfg, err := env.PKI.ClientConfig(v.version)
				if err != nil {
					t.Fatal(err)
				}
				cfg.ServerName, cfg.ClientSessionCache = host, cache
				return &harness.Client{Config: cfg}
			}
			mustDo(t, ctx, client(harness.Host), env.MeshLB.Direct[0])
			issued := cache.last
			for i, addr := range env.MeshLB.Direct[:2] {
				cache.Put("", issued)
				resumed, err := client(harness.OtherHost).Do(ctx, addr)
				if err != nil {
					t.Fatalf("replica %d, %s: %v", i+1, harness.OtherHost, err)
				}
				if resumed {
					t.Errorf("replica %d resumed a session issued for %s on %s", i+1, harness.Host, harness.OtherHost)
				}
				cache.Put("", issued)
				if resumed, err := client(harness.Host).Do(ctx, addr); err != nil || !resumed {
					t.Errorf("replica %d, %s: resumed=%v err=%v; want the session to resume for its own host", i+1, harness.Host, resumed, err)
				}
			}
		})
	}
}
