// Package sessionmesh shares TLS session state between meshgate replicas so
// that a client can resume on any replica. See docs/sessionmesh.md.
//
// A Node owns a session store (sessionmesh/store), a mesh transport
// (sessionmesh/mesh) replicating the store to peers, and a ticket key ring.
// The data plane calls Node.ConfigureTLS on every tls.Config it builds.
package sessionmesh

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// PeerSource yields complete peer address sets; see mesh.PeerSource. The
// Kubernetes mode implements it from EndpointSlices.
type PeerSource = mesh.PeerSource

// StaticPeers is the --peers PeerSource.
type StaticPeers = mesh.StaticPeers

// Config configures a Node. The zero value of every optional field is its
// default.
type Config struct {
	// NodeName is unique per replica. Required.
	NodeName string
	// ClusterID must be equal on all replicas; "" means the CA fingerprint
	// (or "local" without a CA).
	ClusterID string
	// ListenAddr is the mesh listen address; "" runs a local-only store
	// (single replica, tests).
	ListenAddr string
	// AdvertiseAddr is the address peers know this node by; "" means the
	// bound listen address.
	AdvertiseAddr string
	// Peers yields the peers; nil means none.
	Peers PeerSource
	// CA is the cluster CA, for a replica whose CA never changes; Identity
	// takes precedence. One of them is required with ListenAddr.
	CA *pki.CA
	// Identity is the mesh CA material in force (signing CA, trusted CAs,
	// cluster id, session-id MAC key), updated while the node runs during
	// a CA rotation: the node certificate follows the signing CA and mesh
	// connections whose certificates are no longer trusted are closed.
	// The session-id MAC key keys every replica's ids alike, so all
	// replicas accept each other's.
	Identity *pki.Identity
	// StoreBudgetBytes bounds the session store; 0 means 256 MiB.
	StoreBudgetBytes int64
	// LookupTimeout bounds the point lookup to an issuing peer on a local
	// miss; 0 means 2 ms.
	LookupTimeout time.Duration
	// TicketKeyRotation is the TicketKeys rotation interval of the default
	// key ring and of rings whose hosts set none (each policy's ring
	// rotates at its own, see Host.TicketKeyRotation); 0 means 1 h.
	TicketKeyRotation time.Duration
	// Registerer receives the Prometheus metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Log receives events; state bytes and keys are never logged.
	Log logr.Logger
	// Zones are the key-value zones the node holds and replicates to
	// peers of protocol version 3 (see State); none means no key-value
	// state.
	Zones []clusterstate.ZoneConfig
	// Now, if set, is the clock sessions are issued and resumed by
	// (lifetimes, id expiry); nil means time.Now. For tests.
	Now func() time.Time
	// MeshTuning, if set, adjusts the mesh configuration (queue sizes,
	// timers) before it starts; tests use it for short timeouts.
	MeshTuning func(*mesh.Config)
	// LimitReportInterval is how often the node sends its peers the
	// request-limit counts that changed (Limiter); 0 means 25 ms.
	LimitReportInterval time.Duration
	// MaxLimitKeys bounds the keys the request limiter tracks; 0 means
	// ratelimit.DefaultMaxKeys.
	MaxLimitKeys int
}

// Node is one replica's session mesh member. Create it with New, run it
// with Run. Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	id      uint64
	store   *store.Store
	mesh    *mesh.Mesh // nil when local-only
	ipad    [64]byte   // HMAC pads of the session-id MAC key
	opad    [64]byte
	tickets *ticketRings
	m       *metrics
	state   *clusterstate.Store // nil without Zones
	affKey  []byte              // AffinityKey
	limiter *ratelimit.Limiter  // request limits, keyed alike on every replica
	sources sourceBuckets       // remote lookup budget per client address (budget.go)

	maxLifetime atomic.Int64 // longest configured session lifetime (ns); 0: none yet
	running     atomic.Bool
	killOnce    sync.Once
}

// New builds a Node and, with a ListenAddr, binds the mesh listener.
func New(cfg Config) (*Node, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("sessionmesh: NodeName is required")
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 2 * time.Millisecond
	}
	if cfg.TicketKeyRotation <= 0 {
		cfg.TicketKeyRotation = time.Hour
	}
	if cfg.Identity == nil && cfg.CA != nil {
		id, err := pki.IdentityOf(cfg.CA)
		if err != nil {
			return nil, fmt.Errorf("sessionmesh: %w", err)
		}
		cfg.Identity = id
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClusterID == "" {
		cfg.ClusterID = "local"
		if cfg.Identity != nil {
			cfg.ClusterID = cfg.Identity.Current().ClusterID()
		}
	}
	n := &Node{cfg: cfg, id: mesh.NodeID(cfg.NodeName), store: store.New(cfg.StoreBudgetBytes)}
	n.tickets = newTicketRings(cfg.NodeName, cfg.TicketKeyRotation)
	def, _ := n.tickets.get("")
	def.tick(cfg.NodeName, cfg.TicketKeyRotation, time.Now()) // first key
	var err error
	macKey := make([]byte, 32)
	if cfg.Identity != nil {
		macKey = cfg.Identity.Current().SessionIDKey()
	} else {
		rand.Read(macKey)
	}
	n.affKey = deriveKey(macKey, "meshgate cookie affinity v1")
	if n.limiter, err = ratelimit.New(ratelimit.Config{Key: deriveKey(macKey, "meshgate request limits v1")[:16],
		MaxKeys: cfg.MaxLimitKeys, Now: cfg.Now}); err != nil {
		return nil, fmt.Errorf("sessionmesh: %w", err)
	}
	for i := range n.ipad { // HMAC pads (RFC 2104); the key is shorter than a block
		var k byte
		if i < len(macKey) {
			k = macKey[i]
		}
		n.ipad[i], n.opad[i] = k^0x36, k^0x5c
	}
	n.m = newMetrics(n)
	if len(cfg.Zones) > 0 {
		n.state, err = clusterstate.New(clusterstate.Config{Zones: cfg.Zones, Origin: n.id, Publish: n.publishKV})
		if err != nil {
			return nil, fmt.Errorf("sessionmesh: %w", err)
		}
	}
	if cfg.ListenAddr != "" {
		if cfg.Identity == nil {
			return nil, errors.New("sessionmesh: CA or Identity is required to run the mesh")
		}
		if n.mesh, err = n.newMesh(); err != nil {
			return nil, err
		}
		m := n.mesh
		cfg.Identity.OnUpdate(func(*pki.Bundle) { m.Reverify() })
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(n.m); err != nil {
			return nil, fmt.Errorf("sessionmesh: register metrics: %w", err)
		}
		if err := cfg.Registerer.Register(n.limiter); err != nil {
			return nil, fmt.Errorf("sessionmesh: register limiter metrics: %w", err)
		}
	}
	return n, nil
}

func (n *Node) newMesh() (*mesh.Mesh, error) {
	ips := listenIPs(n.cfg.ListenAddr, n.cfg.AdvertiseAddr)
	nc, err := n.cfg.Identity.NewNodeCert(n.cfg.NodeName, ips, 0)
	if err != nil {
		return nil, fmt.Errorf("sessionmesh: node certificate: %w", err)
	}
	mc := mesh.Config{
		NodeName: n.cfg.NodeName, ClusterID: n.cfg.ClusterID,
		ListenAddr: n.cfg.ListenAddr, AdvertiseAddr: n.cfg.AdvertiseAddr,
		CA: n.cfg.Identity, Cert: nc.Get, Peers: n.cfg.Peers, Handler: (*handler)(n),
		Log: n.cfg.Log.WithName("mesh"), OnReplicated: n.m.observeReplication,
	}
	if n.state != nil {
		mc.KV = (*kvHandler)(n)
	}
	mc.Limits = (*limitHandler)(n)
	if n.cfg.MeshTuning != nil {
		n.cfg.MeshTuning(&mc)
	}
	m, err := mesh.New(mc)
	if err != nil {
		return nil, fmt.Errorf("sessionmesh: %w", err)
	}
	return m, nil
}

// MeshAddr returns the bound mesh address, or "" when local-only.
func (n *Node) MeshAddr() string {
	if n.mesh == nil {
		return ""
	}
	return n.mesh.Addr()
}

// Run serves until ctx is done, then leaves the mesh cleanly (peers are
// told with Goodbye) and returns nil once all its goroutines have exited.
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("sessionmesh: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { n.store.Run(ctx, time.Second) })
	wg.Go(func() { n.rotateLoop(ctx) })
	if n.state != nil {
		wg.Go(func() { n.state.Run(ctx, time.Second) })
	}
	wg.Go(func() { n.limitLoop(ctx) })
	var err error
	if n.mesh != nil {
		err = n.mesh.Run(ctx)
		cancel()
	} else {
		<-ctx.Done()
	}
	wg.Wait()
	return err
}

// Kill stops the mesh as a crash would (no Goodbye to peers) and makes Run
// return. For tests of failure handling.
func (n *Node) Kill() {
	if n.mesh != nil {
		n.mesh.Kill()
	}
}

// ErrNotReady is returned by Ready until the initial sync is over.
var ErrNotReady = errors.New("sessionmesh: initial snapshot not received yet")

// Ready returns nil once the node has the cluster's sessions: a snapshot
// from a peer completed, it has no peers, or no peer was reachable within
// the initial-sync wait (first replica). A local-only node is always ready.
func (n *Node) Ready() error {
	if n.mesh == nil || n.mesh.Synced() {
		return nil
	}
	return ErrNotReady
}

// Revoke deletes the session named by a session id (a stateful ticket
// identity or a TLS 1.2 session ID) everywhere. It returns false if the id
// is neither.
func (n *Node) Revoke(identity []byte) bool {
	_, key, ok := n.parseID(identity)
	if !ok {
		_, _, key, ok = n.parseSessionID(identity)
	}
	if !ok {
		return false
	}
	exp := time.Now().Add(n.lifetimeBound()).UnixNano() // outlives any session the id may name
	if r, st := n.store.Get(key, time.Now()); st == store.Found {
		exp = r.Expires
	}
	n.store.Delete(key, exp, time.Now())
	if n.mesh != nil {
		n.mesh.Delete(wire.Tombstone{Key: key, Expires: exp})
	}
	n.m.revoked.Add(1)
	return true
}

// AffinityKey returns the key of affinity cookies' MACs: derived (HMAC-
// SHA256 under a label of its own) from the cluster's session-id MAC key,
// so every replica of a cluster has the same one and a cookie one replica
// set is honoured by all; random on a node without mesh identity. The
// caller must not modify it.
func (n *Node) AffinityKey() []byte { return n.affKey }

// deriveKey derives a key for one purpose from secret.
func deriveKey(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// State returns the node's key-value zones, nil without Config.Zones.
// Writes made on it are replicated to every peer; a node is Ready only
// once the snapshot it joined with, zones included, has arrived.
func (n *Node) State() *clusterstate.Store { return n.state }

// publishKV hands a local key-value write to the mesh.
func (n *Node) publishKV(e clusterstate.Entry) {
	if n.mesh != nil {
		n.mesh.PublishKV(e)
	}
}

// kvHandler adapts Node to mesh.KVHandler.
type kvHandler Node

func (h *kvHandler) HandleKV(_ string, es []clusterstate.Entry) { h.state.Merge(es) }

func (h *kvHandler) RangeKV(fn func(clusterstate.Entry) bool) { h.state.Range(fn) }

// handler adapts Node to mesh.Handler.
type handler Node

func (h *handler) HandleInsert(from string, recs []store.Record) {
	h.put(from, recs, true)
}

func (h *handler) HandleSnapshot(from string, recs []store.Record) {
	h.put(from, recs, false)
}

// put stores the records that pass checkRecord (records.go).
func (h *handler) put(from string, recs []store.Record, insert bool) {
	n := (*Node)(h)
	now := time.Now()
	for i := range recs {
		if n.checkRecord(from, &recs[i], insert, now) {
			h.store.Put(recs[i], now)
		}
	}
}

func (h *handler) HandleDelete(from string, ts []wire.Tombstone) {
	n := (*Node)(h)
	now := time.Now()
	limit := now.Add(n.lifetimeBound()).UnixNano()
	for _, t := range ts {
		if t.Expires > limit { // no session it revokes lives longer
			t.Expires = limit
			n.m.violation(from, violTombstoneExpiry)
		}
		h.store.Delete(t.Key, t.Expires, now)
	}
}

func (h *handler) HandleTicketKeys(from string, m wire.TicketKeys) {
	r, _ := h.tickets.get(m.Ring)
	if r == nil {
		h.m.violation(from, violRingLimit)
		return
	}
	now := time.Now()
	if m.RetiredBefore > now.Add(maxKeySkew).UnixNano() {
		h.m.violation(from, violRetireFuture)
	} else if m.RetiredBefore > 0 {
		r.retire(m.RetiredBefore)
		(*Node)(h).tickRing(r, (*Node)(h).leader(), now) // a fresh key if the ring emptied
	}
	for _, v := range r.merge(from, m.Keys, now) {
		h.m.violation(from, v)
	}
}

func (h *handler) Lookup(key store.Key) (store.Record, bool) {
	r, st := h.store.Get(key, time.Now())
	return r, st == store.Found
}

func (h *handler) Snapshot(fn func(store.Record) bool) { h.store.Range(time.Now(), fn) }

func (h *handler) TicketKeys() []wire.TicketKeys { return h.tickets.shared() }

func (h *handler) Tombstones(fn func(wire.Tombstone) bool) {
	h.store.RangeTombstones(time.Now(), func(k store.Key, exp int64) bool {
		return fn(wire.Tombstone{Key: k, Expires: exp})
	})
}

// Limiter returns the node's request limiter: its key is derived from the
// cluster's session-id MAC key, so every replica hashes client keys alike,
// and its counts are exchanged with the peers every LimitReportInterval.
func (n *Node) Limiter() *ratelimit.Limiter { return n.limiter }

// limitLoop sends the changed request-limit counts to the peers, at most
// once every LimitReportInterval and only when there are any (it waits on
// the limiter's Pending, so a node without limited traffic is not woken
// for them), and forgets aged-out keys every second.
func (n *Node) limitLoop(ctx context.Context) {
	every := n.cfg.LimitReportInterval
	if every <= 0 {
		every = 25 * time.Millisecond
	}
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			n.limiter.Sweep()
			continue
		case <-n.limiter.Pending():
		}
		// Counts of the requests until the interval is up go in the same
		// report.
		if d := every - time.Since(last); d > 0 {
			wait.Reset(d)
			select {
			case <-ctx.Done():
				wait.Stop()
				return
			case <-wait.C:
			}
		}
		last = time.Now()
		if cs := n.limiter.Report(); len(cs) > 0 && n.mesh != nil {
			n.mesh.PublishLimits(cs)
		}
	}
}

// limitHandler adapts Node to mesh.LimitHandler.
type limitHandler Node

func (h *limitHandler) HandleLimitCounts(from string, cs []ratelimit.Count) {
	h.limiter.Merge(from, cs)
}
