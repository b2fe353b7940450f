package mesh

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// counters are the mesh-wide counters; per-peer ones live in peer.
type counters struct {
	bytesIn, bytesOut atomic.Uint64
	msgsIn, msgsOut   atomic.Uint64
	drops             atomic.Uint64
	inbound           atomic.Int64
	// unsupported counts messages not sent because the peer's version
	// does not carry their type.
	unsupported atomic.Uint64
	// kvDrops counts key-value entries dropped: a full queue, a failed
	// write, or a peer too old to receive them.
	kvDrops atomic.Uint64
	// limitSent, limitRecv and limitDrops count request-limit counts sent
	// to, received from, and not delivered to peers (full queue, failed
	// write, peer older than version 5).
	limitSent, limitRecv, limitDrops atomic.Uint64

	mu      sync.Mutex
	rejects map[string]uint64
}

func (c *counters) init() { c.rejects = make(map[string]uint64) }

func (c *counters) reject(reason string) {
	c.mu.Lock()
	c.rejects[reason]++
	c.mu.Unlock()
}

// PeerStatus describes one configured peer.
type PeerStatus struct {
	Addr    string `json:"addr"`
	Name    string `json:"name,omitempty"`
	State   string `json:"state"`
	Pending int    `json:"pending"`
	Sent    uint64 `json:"sent"`
	Drops   uint64 `json:"drops"`
	// DialFailures counts connection attempts to the peer that failed
	// (TCP, TLS or Hello), refusals by the peer included.
	DialFailures uint64 `json:"dial_failures"`
	// TombstoneResends counts the times every live tombstone was (to be)
	// sent again because the queue overflowed or a batch was lost.
	TombstoneResends uint64 `json:"tombstone_resends"`
	// Version is the protocol version of the outbound connection (0 while
	// it is not online).
	Version uint16 `json:"version,omitempty"`
	// KVPending and KVSent count key-value entries queued and sent.
	KVPending int    `json:"kv_pending"`
	KVSent    uint64 `json:"kv_sent"`
}

// Status is a point-in-time view of the mesh, for the status page and
// metrics.
type Status struct {
	Node        string            `json:"node"`
	Addr        string            `json:"addr"`
	Synced      bool              `json:"synced"`
	Peers       []PeerStatus      `json:"peers"`
	PeersOnline int               `json:"peers_online"`
	Inbound     int64             `json:"inbound_connections"`
	BytesIn     uint64            `json:"bytes_in"`
	BytesOut    uint64            `json:"bytes_out"`
	MsgsIn      uint64            `json:"messages_in"`
	MsgsOut     uint64            `json:"messages_out"`
	Drops       uint64            `json:"drops"`
	Resyncs     uint64            `json:"resyncs"` // re-sync snapshots received after a lost connection
	Rejected    map[string]uint64 `json:"rejected"`
	// Unsupported counts messages not sent to a peer whose protocol
	// version does not carry their type.
	Unsupported uint64 `json:"unsupported"`
	// KVDrops counts key-value entries lost to a full queue, a failed
	// write or a peer too old for them.
	KVDrops uint64 `json:"kv_drops"`
	// LimitSent, LimitReceived and LimitDrops count request-limit counts
	// (24 bytes each on the wire) sent, received, and not delivered.
	LimitSent     uint64 `json:"limit_counts_sent"`
	LimitReceived uint64 `json:"limit_counts_received"`
	LimitDrops    uint64 `json:"limit_counts_dropped"`
}

// Status returns the current status.
func (m *Mesh) Status() Status {
	st := Status{Node: m.cfg.NodeName, Addr: m.addr, Synced: m.Synced(),
		Inbound: m.stats.inbound.Load(), BytesIn: m.stats.bytesIn.Load(),
		BytesOut: m.stats.bytesOut.Load(), MsgsIn: m.stats.msgsIn.Load(),
		MsgsOut: m.stats.msgsOut.Load(), Drops: m.stats.drops.Load(),
		Resyncs: m.resyncs.Load(), Rejected: make(map[string]uint64),
		Unsupported: m.stats.unsupported.Load(), KVDrops: m.stats.kvDrops.Load(),
		LimitSent: m.stats.limitSent.Load(), LimitReceived: m.stats.limitRecv.Load(), LimitDrops: m.stats.limitDrops.Load()}
	m.eachPeer(func(p *peer) {
		p.mu.Lock()
		ps := PeerStatus{Addr: p.addr, Name: p.name, State: p.state,
			Pending: len(p.recs) + len(p.tombs), Sent: p.sent.Load(), Drops: p.drops.Load(),
			DialFailures: p.failed.Load(), TombstoneResends: p.tombResends.Load(),
			KVPending: len(p.kvs), KVSent: p.kvSent.Load()}
		p.mu.Unlock()
		if c := p.cur.Load(); c != nil {
			ps.Version = c.version
		}
		if ps.State == StateOnline {
			st.PeersOnline++
		}
		st.Peers = append(st.Peers, ps)
	})
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Addr < st.Peers[j].Addr })
	m.stats.mu.Lock()
	for k, v := range m.stats.rejects {
		st.Rejected[k] = v
	}
	m.stats.mu.Unlock()
	return st
}

// syncState tracks the initial snapshot. A snapshot is requested from the
// first peer that comes online and re-requested from the next one if that
// connection drops before SnapshotEnd.
type syncState struct {
	ch   chan struct{}
	once sync.Once

	mu         sync.Mutex
	inflight   bool
	complete   bool
	everOnline bool
}

func (s *syncState) init() { s.ch = make(chan struct{}) }

func (s *syncState) done() bool {
	select {
	case <-s.ch:
		return true
	default:
		return false
	}
}

func (s *syncState) markDone() { s.once.Do(func() { close(s.ch) }) }

// claim reports whether the caller should request a snapshot now.
func (s *syncState) claim() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.everOnline = true
	if s.complete || s.inflight {
		return false
	}
	s.inflight = true
	return true
}

func (s *syncState) release() {
	s.mu.Lock()
	s.inflight = false
	s.mu.Unlock()
}

func (s *syncState) finish() {
	s.mu.Lock()
	s.complete, s.inflight = true, false
	s.mu.Unlock()
	s.markDone()
}

// peerSet is told the size of each peer set; an empty one means there is
// nobody to sync from.
func (s *syncState) peerSet(n int) {
	if n == 0 {
		s.markDone()
	}
}

// waitInitial declares the node synced when, d after start (and every d
// after that), no snapshot is streaming in: no peer came online (the first
// replica, or all peers down) or the ones that did dropped mid-stream.
func (s *syncState) waitInitial(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ch:
			return
		case <-t.C:
			s.mu.Lock()
			idle := !s.inflight
			s.mu.Unlock()
			if idle {
				s.markDone()
				return
			}
		}
	}
}
