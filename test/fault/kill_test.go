package fault

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/e2e/harness"
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

// firstAfterKill counts, per client, the first connection to a survivor
// that started after the kill, by who issued the session it offered.
type firstAfterKill struct {
	fromVictim, fromVictimResumed       atomic.Int64
	fromSurvivors, fromSurvivorsResumed atomic.Int64
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
	const workers = 12
	var killed atomic.Bool
	var before, after loadCounts
	var first firstAfterKill
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	for w := range workers {
		cfg := base.Clone()
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		cl := &harness.Client{Config: cfg}
		wg.Go(func() {
			issuer, counted := -1, false // who issued the session the client holds
			for i := w; loadCtx.Err() == nil; i++ {
				target := i % len(c.Replicas)
				started := killed.Load()
				resumed, err := cl.Do(loadCtx, c.Replicas[target].HTTPSAddr)
				if loadCtx.Err() != nil {
					return
				}
				if started && !counted && target != victim && err == nil && issuer >= 0 {
					counted = true
					if issuer == victim {
						first.fromVictim.Add(1)
						if resumed {
							first.fromVictimResumed.Add(1)
						}
					} else {
						first.fromSurvivors.Add(1)
						if resumed {
							first.fromSurvivorsResumed.Add(1)
						}
					}
				}
				if err == nil {
					issuer = target // TLS 1.3: every connection brings a new ticket
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
	time.Sleep(3 * time.Second)
	killAt := time.Now()
	killed.Store(true)
	c.Replicas[victim].Proc.Kill()
	time.Sleep(4 * time.Second)
	stopLoad()
	wg.Wait()

	b, a := &before, &after
	t.Logf("FAULT: kill-under-load before: %d ok, %d on survivors of which %d resumed, %d failed",
		b.ok.Load(), b.survivorConns.Load(), b.survivorResumed.Load(), b.failedOnVictim.Load()+b.failedOnSurvivors.Load())
	full := a.survivorConns.Load() - a.survivorResumed.Load()
	lostV := first.fromVictim.Load() - first.fromVictimResumed.Load()
	lostS := first.fromSurvivors.Load() - first.fromSurvivorsResumed.Load()
	t.Logf("FAULT: kill-under-load after SIGKILL of %s (%v of load, %d clients): %d ok; requests failed: %d on the killed replica, %d on survivors; survivor connections %d, resumed %d, full handshakes %d",
		c.Replicas[victim].Name, time.Since(killAt).Round(time.Millisecond), workers, a.ok.Load(),
		a.failedOnVictim.Load(), a.failedOnSurvivors.Load(), a.survivorConns.Load(), a.survivorResumed.Load(), full)
	t.Logf("FAULT: kill-under-load sessions issued before the kill, first offered to a survivor: by survivors %d, lost %d; by the killed replica %d, lost %d",
		first.fromSurvivors.Load(), lostS, first.fromVictim.Load(), lostV)
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
	// A session the victim issued in the last milliseconds before SIGKILL
	// may have died in its send buffers: those losses are what the kill
	// costs. Any other full handshake on a survivor is the replication race
	// the cluster has without faults too (a ticket issued on one survivor
	// and offered to the other before it arrived and while the point lookup
	// timed out on this loaded machine): a few per thousand are tolerated.
	if extra, allowed := full-lostV, 2+a.survivorConns.Load()/500; extra > allowed {
		t.Errorf("%d full handshakes on survivors not explained by sessions the killed replica issued (allowed %d)", extra, allowed)
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
