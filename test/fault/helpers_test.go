// Package fault runs fault-injection tests on real meshgate processes:
// three standalone replicas sharing sessions over the mesh, real Go TLS
// clients, SIGKILL and restart of a replica, and a network partition made
// with network namespaces, veth pairs, a bridge and `ip link`/`tc netem`.
// Every figure is logged as a line starting with "FAULT:". Everything runs
// on 127.0.0.0/8 or in namespaces the tests create and delete; every
// process and namespace is removed by t.Cleanup, also on failure. Nothing
// is skipped: a missing tool or capability fails the test.
package fault

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

var (
	binsOnce sync.Once
	bins     harness.Bins
	binsErr  error
	binsDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binsDir != "" {
		_ = os.RemoveAll(binsDir)
	}
	os.Exit(code)
}

// getBins returns bin/meshgate and bin/echo-backend: $MESHGATE_BIN when
// `make test` provides it, otherwise built once for the package.
func getBins(t *testing.T) harness.Bins {
	t.Helper()
	binsOnce.Do(func() {
		binsDir, binsErr = os.MkdirTemp("", "meshgate-fault-bin-")
		if binsErr == nil {
			bins, binsErr = harness.BuildBins(binsDir)
		}
	})
	if binsErr != nil {
		t.Fatalf("binaries: %v", binsErr)
	}
	return bins
}

// scenario is the PKI, manifests and echo backend a cluster serves.
type scenario struct {
	dir      string
	bins     harness.Bins
	pki      *harness.PKI
	manifest string
}

// newScenario writes the TLS PKI and manifests for a backend at echoAddr
// ("" = start bin/echo-backend on 127.0.0.10).
func newScenario(t *testing.T, echoAddr string) *scenario {
	t.Helper()
	dir := t.TempDir()
	s := &scenario{dir: dir, bins: getBins(t)}
	if err := harness.RequireTools("openssl"); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.pki, err = harness.MakePKI(filepath.Join(dir, "pki"), harness.Host); err != nil {
		t.Fatal(err)
	}
	if echoAddr == "" {
		e, err := harness.StartEcho(t, s.bins, dir, "127.0.0.10")
		if err != nil {
			t.Fatal(err)
		}
		echoAddr = e.HTTPAddr
	}
	m := harness.Manifests{EchoAddr: echoAddr, SecretYAML: s.pki.SecretYAML}
	if s.manifest, err = m.Write(filepath.Join(dir, "manifests")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s", dir)
			keepDir(t, dir)
		}
	})
	return s
}

// keepDir copies the logs of a failed test out of its TempDir (which the
// testing package deletes) into a directory that survives.
func keepDir(t *testing.T, dir string) {
	keep, err := os.MkdirTemp("", "meshgate-fault-logs-")
	if err != nil {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(keep, filepath.Base(l)), b, 0o644)
		}
	}
	t.Logf("replica logs copied to %s", keep)
}

// meshStatus is the part of /status/sessionmesh the tests read.
type meshStatus struct {
	Ready bool `json:"ready"`
	Store struct {
		Records int64 `json:"records"`
	} `json:"store"`
	Mesh *struct {
		PeersOnline int    `json:"peers_online"`
		Resyncs     uint64 `json:"resyncs"`
		Drops       uint64 `json:"drops"`
	} `json:"mesh"`
	Misses map[string]uint64 `json:"resumption_misses"`
}

// status fetches and decodes /status/sessionmesh from r.
func status(r *harness.Replica) (meshStatus, error) {
	var st meshStatus
	body, err := r.Get("/status/sessionmesh")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return st, fmt.Errorf("decode status of %s: %w", r.Name, err)
	}
	if st.Mesh == nil {
		return st, fmt.Errorf("%s: status without mesh section", r.Name)
	}
	return st, nil
}

// records returns r's store record count, or -1 if the status is not
// available (process down, unreachable).
func records(r *harness.Replica) int64 {
	st, err := status(r)
	if err != nil {
		return -1
	}
	return st.Store.Records
}

// waitUntil polls cond (testkit.Poll) until it holds or timeout passes,
// and returns how long it took.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if err := testkit.Until(timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return time.Since(start)
}

// loader is an in-process mesh node, authenticated by the cluster's mesh
// CA like a replica, that feeds synthetic session records to the replicas
// it is pointed at. Replicas store what a peer inserts, so this fills their
// stores far faster than TLS handshakes could. It stores nothing itself
// and answers no lookups or snapshots.
type loader struct {
	m      *mesh.Mesh
	cancel context.CancelFunc
	done   chan struct{}
	macKey []byte // the cluster's session-id MAC key: record keys are MACs of their state
}

type nopHandler struct{}

func (nopHandler) HandleInsert(string, []store.Record)      {}
func (nopHandler) HandleSnapshot(string, []store.Record)    {}
func (nopHandler) HandleDelete(string, []wire.Tombstone)    {}
func (nopHandler) HandleTicketKeys(string, wire.TicketKeys) {}
func (nopHandler) Lookup(store.Key) (store.Record, bool)    { return store.Record{}, false }
func (nopHandler) Snapshot(func(store.Record) bool)         {}
func (nopHandler) TicketKeys() []wire.TicketKeys            { return nil }
func (nopHandler) Tombstones(func(wire.Tombstone) bool)     {}

// startLoader joins the mesh whose CA is in meshDir, listening on listenIP,
// dialing peers. It is stopped (Goodbye) by t.Cleanup or stop.
func startLoader(t *testing.T, meshDir, listenIP string, peers []string) *loader {
	t.Helper()
	ca, err := pki.LoadCA(meshDir)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := ca.NewNodeCert("fault-loader", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mesh.New(mesh.Config{NodeName: "fault-loader", ClusterID: ca.Fingerprint(),
		ListenAddr: listenIP + ":0", CA: ca, Cert: nc.Get, Peers: mesh.StaticPeers(peers),
		Handler: nopHandler{}, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	mat, err := pki.LoadMaterial(meshDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mat.Parse()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &loader{m: m, cancel: cancel, done: make(chan struct{}), macKey: b.SessionIDKey()}
	go func() { defer close(l.done); _ = m.Run(ctx) }()
	t.Cleanup(l.stop)
	waitUntil(t, "loader online with every peer", 20*time.Second, func() bool {
		return len(m.OnlineNames()) == len(peers)
	})
	return l
}

func (l *loader) stop() { l.cancel(); <-l.done }

// insert sends n synthetic records (random 600-byte states, 10 min
// lifetime) to every connected replica, paced so that no peer queue
// overflows. Replicas refuse a record whose key is not the cluster MAC of
// its state (issue 15, store poisoning), so each key is that MAC, derived
// as the node derives it: HMAC-SHA256(session-id key, label || state),
// truncated to a store key.
func (l *loader) insert(t *testing.T, n int) {
	t.Helper()
	origin := mesh.NodeID("fault-loader")
	const chunk = 4096
	for sent := 0; sent < n; {
		for i := 0; i < chunk && sent < n; i, sent = i+1, sent+1 {
			now := time.Now()
			state := make([]byte, 600)
			_, _ = rand.Read(state)
			mac := hmac.New(sha256.New, l.macKey)
			mac.Write([]byte("meshgate session key v1\x00"))
			mac.Write(state)
			r := store.Record{Origin: origin, Created: now.UnixNano(),
				Expires: now.Add(10 * time.Minute).UnixNano(), State: state}
			copy(r.Key[:], mac.Sum(nil))
			l.m.Insert(r)
		}
		waitUntil(t, "loader queues drained", 30*time.Second, func() bool {
			for _, p := range l.m.Status().Peers {
				if p.Pending > 0 {
					return false
				}
			}
			return true
		})
	}
	if d := l.m.Status().Drops; d > 0 {
		t.Fatalf("loader dropped %d records", d)
	}
}
