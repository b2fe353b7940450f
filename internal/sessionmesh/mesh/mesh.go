// Package mesh is the session mesh transport: a full mesh of mutually
// authenticated TLS 1.3 connections between replicas, carrying the wire
// protocol.
//
// Connection roles. Every node dials every peer it learns from its
// PeerSource and accepts connections from every peer, so a pair of nodes
// shares two connections. No dedupe is needed because roles are fixed: a
// node's outbound connection carries what that node originates (inserts,
// deletes, ticket keys, lookup and snapshot requests); its inbound
// connections carry what peers originate, and the answers to requests go
// back on the connection they came on. Each connection has one owner
// goroutine (the writer) and one reader goroutine it starts and joins.
//
// Sending never waits for a peer: each peer has a bounded queue. A record
// queued on an idle connection is sent at once, written by the caller
// itself (bounded by InlineWriteTimeout, see flushInline); under load records are
// batched and flushed when the queue holds BatchBytes or FlushInterval after
// the previous flush. When the queue is full new records are dropped and counted; the
// session still resumes on the node that issued it and, through the point
// lookup, on any node that can reach the issuer.
package mesh

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// NodeID maps a node name to the 64-bit id carried in session ids.
func NodeID(name string) uint64 {
	sum := sha256.Sum256([]byte(name))
	return binary.BigEndian.Uint64(sum[:8])
}

// Handler receives what peers send. The mesh calls it from connection
// goroutines, concurrently; implementations must be safe for concurrent
// use and must not block for long. Slices passed in are owned by the
// handler.
type Handler interface {
	// HandleInsert stores records replicated by peer `from`, their issuer.
	HandleInsert(from string, recs []store.Record)
	// HandleSnapshot stores records streamed by peer `from` in a snapshot
	// this node asked for (records of every issuer).
	HandleSnapshot(from string, recs []store.Record)
	// HandleDelete applies revocations.
	HandleDelete(from string, ts []wire.Tombstone)
	// HandleTicketKeys merges the keys of one ticket key ring (m.Ring is
	// "" from peers of protocol versions before wire.RingsSince).
	HandleTicketKeys(from string, m wire.TicketKeys)
	// Lookup answers a peer's point lookup from the local store only.
	Lookup(key store.Key) (store.Record, bool)
	// Snapshot calls fn for every live record until fn returns false.
	Snapshot(fn func(store.Record) bool)
	// Tombstones calls fn for every live tombstone (revocation) until fn
	// returns false: snapshots carry them, and so does the re-send after
	// a peer's queue overflowed.
	Tombstones(fn func(wire.Tombstone) bool)
	// TicketKeys returns the current key rings, one message per ring, sent
	// to each peer on connect; nil if none.
	TicketKeys() []wire.TicketKeys
}

// KVHandler receives the key-value zone entries peers send (protocol
// version 3) and supplies this node's for snapshots. Like Handler it is
// called concurrently from connection goroutines and must not block for
// long; slices passed in are owned by the handler.
type KVHandler interface {
	// HandleKV merges entries replicated or streamed from peer `from`.
	HandleKV(from string, es []clusterstate.Entry)
	// RangeKV calls fn for every live entry (tombstones included) until fn
	// returns false.
	RangeKV(fn func(clusterstate.Entry) bool)
}

// LimitHandler receives the request-limit counts peers report (protocol
// version 5). Called concurrently from connection goroutines; it must not
// block for long; the slice is owned by the handler.
type LimitHandler interface {
	HandleLimitCounts(from string, cs []ratelimit.Count)
}

// PeerSource yields the set of peer mesh addresses. Peers returns a channel
// on which each value is the complete current set (not a delta); the
// channel is closed when ctx is done. The mesh ignores its own address. The
// first value should come promptly: readiness waits for it.
type PeerSource interface {
	Peers(ctx context.Context) <-chan []string
}

// StaticPeers is a fixed PeerSource (--peers).
type StaticPeers []string

// Peers implements PeerSource: it sends the list once.
func (s StaticPeers) Peers(ctx context.Context) <-chan []string {
	ch := make(chan []string, 1)
	ch <- slices.Clone(s)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

// Config configures a Mesh. Zero durations and sizes take the defaults
// noted per field.
type Config struct {
	// NodeName is this node's unique name; it must equal the CN of Cert.
	NodeName string
	// ClusterID must match on every node of a cluster.
	ClusterID string
	// ListenAddr is the TCP address to listen on (":0" picks a port).
	ListenAddr string
	// AdvertiseAddr is sent in Hello; defaults to the bound address.
	AdvertiseAddr string
	// CA verifies peers against the CAs trusted now (a *pki.CA or a
	// *pki.Identity). Required. After the trusted CAs change, Reverify
	// drops the connections they no longer admit.
	CA PeerVerifier
	// Cert returns this node's certificate (e.g. pki.NodeCert.Get). Required.
	Cert func() (*tls.Certificate, error)
	// Peers yields the peer sets; nil means no peers.
	Peers PeerSource
	// Handler receives peer messages. Required.
	Handler Handler
	// KV receives key-value zone entries; nil means this node holds none
	// (entries from peers are dropped, snapshots carry none).
	KV KVHandler
	// Limits receives request-limit counts; nil drops them.
	Limits LimitHandler
	// MaxVersion caps the protocol version this node announces (0 or out
	// of range: wire.MaxVersion). Pinning it to the old version holds a
	// cluster there during a rolling upgrade; tests run old peers with it.
	MaxVersion uint16
	// Log receives connection events; never secrets.
	Log logr.Logger
	// OnReplicated, if set, observes the insert-to-arrival latency of every
	// replicated record, on this node's clock: the record's Created is the
	// issuer's, so the clock offset is estimated from the issuer's
	// heartbeats and removed (see peerClock).
	OnReplicated func(time.Duration)

	QueueRecords  int           // per-peer queue bound in records; 16384
	QueueBytes    int           // per-peer queue bound in encoded bytes; 32 MiB
	BatchBytes    int           // flush threshold and frame budget; 64 KiB, at most wire.MaxBatchBytes
	FlushInterval time.Duration // max batching delay under load; 250 µs
	// InlineWriteTimeout bounds how long Insert may write an idle
	// connection's queue itself before the connection is given up; 50 ms.
	// Only a peer that stopped reading (its socket buffer full) makes it
	// wait at all.
	InlineWriteTimeout time.Duration
	HeartbeatInterval  time.Duration // 500 ms
	DeadAfter          time.Duration // read timeout declaring a peer dead; 3 s
	DialTimeout        time.Duration // dial + TLS + hello; 2 s
	ReconnectMin       time.Duration // 50 ms
	ReconnectMax       time.Duration // 5 s
	InitialSync        time.Duration // wait for a reachable peer before Ready; 3 s
	MaxInbound         int           // authenticated inbound connections, and handshakes from peer-set addresses; 256
	// Handshakes from addresses not in the peer set (see admission in
	// accept.go): in all, per source address, and their deadline.
	MaxHandshakes          int           // 64
	MaxHandshakesPerSource int           // 16
	HandshakeTimeout       time.Duration // 1 s
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt(&c.QueueRecords, 16384)
	defInt(&c.QueueBytes, 32<<20)
	defInt(&c.BatchBytes, 64<<10)
	defInt(&c.MaxInbound, 256)
	defInt(&c.MaxHandshakes, 64)
	defInt(&c.MaxHandshakesPerSource, 16)
	def(&c.HandshakeTimeout, time.Second)
	def(&c.FlushInterval, 250*time.Microsecond)
	def(&c.InlineWriteTimeout, 50*time.Millisecond)
	def(&c.HeartbeatInterval, 500*time.Millisecond)
	def(&c.DeadAfter, 3*time.Second)
	def(&c.DialTimeout, 2*time.Second)
	def(&c.ReconnectMin, 50*time.Millisecond)
	def(&c.ReconnectMax, 5*time.Second)
	def(&c.InitialSync, 3*time.Second)
}

// Mesh is one node's view of the mesh. Create with New, start with Run.
// Its methods are safe for concurrent use.
type Mesh struct {
	cfg       Config
	ln        net.Listener
	addr      string
	serverTLS *tls.Config
	clientTLS *tls.Config
	stats     counters

	mu      sync.Mutex
	peers   map[string]*peer                    // by address; guarded by mu
	list    atomic.Pointer[[]*peer]             // immutable snapshot of peers for lock-free reads
	peerIPs atomic.Pointer[map[netip.Addr]bool] // IPs of the peer set's addresses (admission)
	adm     admission
	// dialFrom is the listen IP (port 0) when it is a specific IP; nil
	// lets the kernel choose.
	dialFrom net.Addr

	leave   atomic.Bool // send Goodbye on shutdown
	kill    context.CancelFunc
	started atomic.Bool
	sync    syncState
	reqID   atomic.Uint64

	// testHookDraining, if set, runs in Run once the peers to wait for
	// are known and before waiting (tests).
	testHookDraining func()

	conns connSet // established connections, for Reverify

	resyncMu      sync.Mutex
	resync        resyncState // guarded by resyncMu
	resyncPending atomic.Bool // resync.want is not empty
	resyncs       atomic.Uint64
}

// New validates cfg and binds the listener, so Addr is known before Run.
func New(cfg Config) (*Mesh, error) {
	if cfg.NodeName == "" || cfg.ClusterID == "" || cfg.CA == nil || cfg.Cert == nil || cfg.Handler == nil {
		return nil, errors.New("mesh: NodeName, ClusterID, CA, Cert and Handler are required")
	}
	if len(cfg.NodeName) > wire.MaxNameLen || len(cfg.ClusterID) > wire.MaxNameLen {
		return nil, errors.New("mesh: node name or cluster id too long")
	}
	cfg.setDefaults()
	if cfg.BatchBytes > wire.MaxBatchBytes {
		return nil, fmt.Errorf("mesh: BatchBytes %d exceeds what one frame holds (%d)", cfg.BatchBytes, wire.MaxBatchBytes)
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen: %w", err)
	}
	m := &Mesh{cfg: cfg, ln: ln, addr: ln.Addr().String(), peers: make(map[string]*peer)}
	m.adm.perSource = make(map[netip.Addr]int)
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		m.dialFrom = &net.TCPAddr{IP: ta.IP}
	}
	if m.cfg.AdvertiseAddr == "" {
		m.cfg.AdvertiseAddr = m.addr
	}
	m.sync.init()
	m.stats.init()
	m.resync = resyncState{lost: make(map[string]bool), want: make(map[string]bool)}
	m.serverTLS, m.clientTLS = m.tlsConfigs()
	return m, nil
}

// Addr returns the bound listen address.
func (m *Mesh) Addr() string { return m.addr }

// Run serves the mesh until ctx is done, then leaves cleanly (Goodbye to
// every peer) and returns after every goroutine it started has exited. Run
// may be called once.
func (m *Mesh) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("mesh: Run called twice")
	}
	ctx, kill := context.WithCancel(ctx)
	m.mu.Lock()
	m.kill = kill
	m.mu.Unlock()
	defer kill()
	m.leave.Store(true)

	var wg sync.WaitGroup
	wg.Go(func() { m.acceptLoop(ctx, &wg) })
	wg.Go(func() { m.watchPeers(ctx) })
	wg.Go(func() { m.sync.waitInitial(ctx, m.cfg.InitialSync) })
	<-ctx.Done()
	m.ln.Close()
	// The accept loop, inbound connections and the peer watcher end with
	// ctx; once they have, no peer is added any more.
	wg.Wait()
	m.mu.Lock()
	peers := make([]*peer, 0, len(m.peers))
	for _, p := range m.peers {
		peers = append(peers, p)
	}
	m.mu.Unlock()
	if m.testHookDraining != nil {
		m.testHookDraining()
	}
	// Waited for without the lock: a peer's goroutine may take its time
	// (a write to a stalled peer runs into DeadAfter), and Kill must not
	// wait for it.
	for _, p := range peers {
		p.cancel()
		<-p.done
	}
	return nil
}

// Kill stops the mesh like a crash: no Goodbye is sent. Run returns.
func (m *Mesh) Kill() {
	m.leave.Store(false)
	m.mu.Lock()
	k := m.kill
	m.mu.Unlock()
	if k != nil {
		k()
	} else {
		m.ln.Close()
	}
}

func (m *Mesh) watchPeers(ctx context.Context) {
	if m.cfg.Peers == nil {
		m.sync.peerSet(0)
		return
	}
	ch := m.cfg.Peers.Peers(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case set, ok := <-ch:
			if !ok {
				return
			}
			n := m.setPeers(ctx, set)
			m.sync.peerSet(n)
		}
	}
}

// setPeers starts peers new in set and stops peers missing from it; it
// returns the number of peers (own address excluded).
func (m *Mesh) setPeers(ctx context.Context, set []string) int {
	want := make(map[string]bool, len(set))
	for _, a := range set {
		if a != "" && a != m.addr && a != m.cfg.AdvertiseAddr && a != m.cfg.ListenAddr {
			want[a] = true
		}
	}
	var stopped []*peer
	m.mu.Lock()
	for a, p := range m.peers {
		if !want[a] {
			p.cancel()
			stopped = append(stopped, p)
			delete(m.peers, a)
		}
	}
	for a := range want {
		if _, ok := m.peers[a]; !ok {
			p := newPeer(m, a)
			m.peers[a] = p
			pctx, cancel := context.WithCancel(ctx)
			p.cancel = cancel
			go p.run(pctx)
		}
	}
	list := make([]*peer, 0, len(m.peers))
	ips := make(map[netip.Addr]bool, len(m.peers))
	for a, p := range m.peers {
		list = append(list, p)
		if ap, err := netip.ParseAddrPort(a); err == nil {
			ips[ap.Addr().Unmap()] = true
		}
	}
	m.peerIPs.Store(&ips)
	m.list.Store(&list)
	m.mu.Unlock()
	for _, p := range stopped {
		<-p.done
	}
	return len(want)
}

// eachPeer calls fn for every current peer without holding a lock, so the
// insert path does not contend on the mesh mutex. A peer being removed may
// still receive a call; its queue is then simply discarded.
func (m *Mesh) eachPeer(fn func(*peer)) {
	if l := m.list.Load(); l != nil {
		for _, p := range *l {
			fn(p)
		}
	}
}

// Insert queues r for every peer. It never waits for a busy connection or
// a full queue (full queues drop and count); on an idle connection it
// writes the record itself, for at most InlineWriteTimeout. The mesh
// shares r.State read-only.
func (m *Mesh) Insert(r store.Record) {
	m.eachPeer(func(p *peer) { p.enqueueRecord(r) })
}

// Delete queues a revocation for every peer.
func (m *Mesh) Delete(t wire.Tombstone) {
	m.eachPeer(func(p *peer) { p.enqueueTomb(t) })
}

// PublishKV queues a key-value entry this node wrote for every peer. It
// never blocks; full queues drop and count. Peers whose connection runs a
// protocol version without key-value zones never receive it (counted in
// Status.KVDrops). The mesh shares e.Value read-only.
func (m *Mesh) PublishKV(e clusterstate.Entry) {
	m.eachPeer(func(p *peer) { p.enqueueKV(e) })
}

// PublishLimits queues one report of this node's request-limit counts for
// every peer. It never blocks: a peer whose queue already holds
// maxQueuedCounts counts drops the report (counted in Status.LimitDrops;
// the next report carries the keys that change again), and peers below
// protocol version 5 never receive it (counted the same way).
func (m *Mesh) PublishLimits(cs []ratelimit.Count) {
	if len(cs) == 0 {
		return
	}
	m.eachPeer(func(p *peer) { p.enqueueLimits(cs) })
}

// BroadcastTicketKeys sends one key ring to every connected peer (and to
// peers connecting later through Handler.TicketKeys). A ring other than ""
// is not sent to peers of a protocol version before wire.RingsSince.
// The mesh shares keys.Keys read-only.
func (m *Mesh) BroadcastTicketKeys(keys wire.TicketKeys) {
	m.eachPeer(func(p *peer) { p.enqueueKeys(keys) })
}

// ErrNoPeer is returned by Lookup when no online peer has the node id.
var ErrNoPeer = errors.New("mesh: issuing node not online")

// Lookup asks the online peer whose NodeID is origin for key, waiting until
// ctx is done. It returns ErrNoPeer without sending anything when no such
// peer is online.
func (m *Mesh) Lookup(ctx context.Context, origin uint64, key store.Key) (store.Record, bool, error) {
	var target *peer
	m.eachPeer(func(p *peer) {
		if p.online.Load() && p.id.Load() == origin {
			target = p
		}
	})
	if target == nil {
		return store.Record{}, false, ErrNoPeer
	}
	return target.lookup(ctx, m.reqID.Add(1), key)
}

// PeerName returns the name of the online peer whose NodeID is origin, or
// "" when none is online.
func (m *Mesh) PeerName(origin uint64) string {
	var name string
	m.eachPeer(func(p *peer) {
		if p.online.Load() && p.id.Load() == origin {
			name = p.nameLoad()
		}
	})
	return name
}

// OnlineNames returns the names of peers with an established outbound
// connection, sorted.
func (m *Mesh) OnlineNames() []string {
	var names []string
	m.eachPeer(func(p *peer) {
		if p.online.Load() {
			names = append(names, p.nameLoad())
		}
	})
	slices.Sort(names)
	return names
}

// Synced reports whether the initial sync is over: a snapshot from a peer
// completed, the peer set is empty, or no peer was reachable within
// Config.InitialSync (the first replica of a cluster).
func (m *Mesh) Synced() bool { return m.sync.done() }

// SyncedC is closed once Synced is true.
func (m *Mesh) SyncedC() <-chan struct{} { return m.sync.ch }
