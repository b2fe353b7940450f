package fault

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

// startCluster starts three standalone replicas on 127.0.0.21–23 serving s.
func startCluster(t *testing.T, s *scenario) *harness.Cluster {
	t.Helper()
	c, err := harness.StartCluster(t, harness.ClusterConfig{Bins: s.bins, Dir: s.dir,
		ManifestDir: s.manifest, Replicas: 3}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loadCounts are the outcomes of the load's connections, by phase and
// target.
type loadCounts struct {
	ok, failedOnVictim, failedOnSurvivors atomic.Int64
	survivorConns, survivorResumed        atomic.Int64
	firstErr                              atomic.Pointer[error]
}

// TestKillReplicaUnderLoad runs steady load from independent TLS 1.3
// clients (one session each, round robin over the three replicas, zero
// think time) and SIGKILLs one replica in the middle. Connections to the
// killed replica fail; connections to the survivors must keep working and
// resume the sessions the clients hold, including sessions the killed
// replica issued before it died.
func TestKillReplicaUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	s := newScenario(t, "")
	c := startCluster(t, s)
	victim := 2
	base, err := s.pki.ClientConfig(tls.VersionTLS13)
	if err != nil {
		t.Fatal(err)
	}
	// Sessions issued before the kill, by the victim ([0]) and by replica-1
	// ([1]), one per client, offered to the survivors after the kill.
	var primed [2][]*harness.Client
	for j, r := range []*harness.Replica{c.Replicas[victim], c.Replicas[0]} {
		for range 24 {
			cfg := base.Clone()
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			cl := &harness.Client{Config: cfg}
			if _, err := cl.Do(ctx, r.HTTPSAddr); err != nil {
				t.Fatalf("priming on %s: %v", r.Name, err)
			}
			primed[j] = append(primed[j], cl)
		}
	}
	const workers = 12
	var killed atomic.Bool
	var before, after loadCounts
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	for w := range workers {
		cfg := base.Clone()
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		cl := &harness.Client{Config: cfg}
		wg.Go(func() {
			for i := w; loadCtx.Err() == nil; i++ {
				target := i % len(c.Replicas)
				resumed, err := cl.Do(loadCtx, c.Replicas[target].HTTPSAddr)
				if loadCtx.Err() != nil {
					return
				}
				// By completion time: a connection the kill cut short counts
				// after it.
				n := &before
				if killed.Load() {
					n = &after
				}
				switch {
				case err != nil && target == victim:
					n.failedOnVictim.Add(1)
				case err != nil:
					n.failedOnSurvivors.Add(1)
					n.firstErr.CompareAndSwap(nil, &err)
				default:
					n.ok.Add(1)
					if target != victim {
						n.survivorConns.Add(1)
						if resumed {
							n.survivorResumed.Add(1)
						}
					}
				}
			}
		})
	}
	// Load by count, bounded in time: enough connections before the kill
	// for every replica to have issued and replicated sessions, and enough
	// after it for the survivors' resumption rate to mean something.
	const perPhase = 300
	testkit.WaitFor(t, 20*time.Second, "load before the kill", func() bool { return before.ok.Load() >= perPhase })
	killAt := time.Now()
	killed.Store(true)
	c.Replicas[victim].Proc.Kill()
	testkit.WaitFor(t, 20*time.Second, "load after the kill", func() bool { return after.survivorConns.Load() >= perPhase })
	stopLoad()
	wg.Wait()

	b, a := &before, &after
	t.Logf("FAULT: kill-under-load before: %d ok, %d on survivors of which %d resumed, %d failed",
		b.ok.Load(), b.survivorConns.Load(), b.survivorResumed.Load(), b.failedOnVictim.Load()+b.failedOnSurvivors.Load())
	full := a.survivorConns.Load() - a.survivorResumed.Load()
	t.Logf("FAULT: kill-under-load after SIGKILL of %s (%v of load, %d clients): %d ok; requests failed: %d on the killed replica, %d on survivors; survivor connections %d, resumed %d, full handshakes %d",
		c.Replicas[victim].Name, time.Since(killAt).Round(time.Millisecond), workers, a.ok.Load(),
		a.failedOnVictim.Load(), a.failedOnSurvivors.Load(), a.survivorConns.Load(), a.survivorResumed.Load(), full)
	var lost [2]int
	for j, ps := range primed {
		for i, cl := range ps {
			resumed, err := cl.Do(ctx, c.Replicas[i%2].HTTPSAddr)
			if err != nil {
				t.Fatalf("pre-kill session client on %s: %v", c.Replicas[i%2].Name, err)
			}
			if !resumed {
				lost[j]++
			}
		}
	}
	t.Logf("FAULT: kill-under-load sessions issued before the kill and lost on survivors: %d of %d issued by the killed replica, %d of %d issued by a survivor",
		lost[0], len(primed[0]), lost[1], len(primed[1]))
	if lost[0]+lost[1] > 0 {
		t.Errorf("sessions issued before the kill did not resume on survivors")
	}
	for _, r := range c.Replicas[:victim] {
		if st, err := status(r); err == nil {
			t.Logf("FAULT: kill-under-load %s resumption misses by reason: %v", r.Name, st.Misses)
		}
	}
	if e := a.firstErr.Load(); e != nil {
		t.Errorf("requests to survivors failed after the kill: %d, first: %v", a.failedOnSurvivors.Load(), *e)
	}
	if b.failedOnVictim.Load()+b.failedOnSurvivors.Load() > 0 {
		t.Errorf("requests failed before the kill")
	}
	if a.survivorConns.Load() < 50 {
		t.Errorf("only %d connections to survivors after the kill", a.survivorConns.Load())
	}
	// Connections that completed on survivors but did a full handshake.
	// Two causes, each with its own bound: a session the victim issued in
	// its last milliseconds that never left its send buffers is lost for
	// good, and each client holds one session, so at most one such miss
	// per client (workers); and the replication race on the survivors
	// (a ticket offered to a replica before its insert arrived and the
	// lookup to the issuer timing out on this loaded machine), bounded by
	// 2 % of the connections, as in test/e2e (0.3–0.9 % measured). The
	// claim itself (sessions issued before the kill resume) is checked with
	// the primed clients above.
	if allowed := workers + a.survivorConns.Load()/50; full > allowed {
		t.Errorf("%d full handshakes on survivors after the kill (allowed %d: one lost session per client plus 2 %%)", full, allowed)
	}
}

// TestRestartedReplicaCatchesUp fills every replica's store with synthetic
// session records through an extra mesh node (see loader), SIGKILLs one
// replica, restarts it, and measures how long the restarted process takes
// to hold the full cache (its /status/sessionmesh record count equal to a
// survivor's). The time runs from the exec of the new process, so it
// includes process start, mesh connect and the snapshot stream.
func TestRestartedReplicaCatchesUp(t *testing.T) {
	s := newScenario(t, "")
	c := startCluster(t, s)
	var addrs []string
	for _, r := range c.Replicas {
		addrs = append(addrs, r.MeshAddr)
	}
	const n = 100_000
	l := startLoader(t, c.MeshDir, "127.0.0.29", addrs)
	start := time.Now()
	l.insert(t, n)
	waitUntil(t, "every replica holds the synthetic sessions", 30*time.Second, func() bool {
		for _, r := range c.Replicas {
			if records(r) < n {
				return false
			}
		}
		return true
	})
	t.Logf("FAULT: loaded %d synthetic sessions (600 B state) into 3 replicas in %v", n, time.Since(start).Round(time.Millisecond))
	l.stop() // the restarted replica must get everything from its peers

	victim := c.Replicas[2]
	victim.Proc.Kill()
	want := records(c.Replicas[0])
	restart := time.Now()
	if err := victim.Start(t); err != nil {
		t.Fatal(err)
	}
	full := waitUntil(t, "restarted replica holds the full cache", 30*time.Second, func() bool {
		return records(victim) >= want
	})
	if err := victim.WaitReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(restart)
	t.Logf("FAULT: restart-catch-up %d sessions: full cache on the restarted replica %v after exec (%.0f sessions/s incl. process start), /readyz 200 after %v",
		want, full.Round(time.Millisecond), float64(want)/full.Seconds(), ready.Round(time.Millisecond))
}
