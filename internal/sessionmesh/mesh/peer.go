package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Peer connection states, as shown in status.
const (
	StateConnecting = "connecting"
	StateOnline     = "online"
	StateBackoff    = "backoff"
	StateLeft       = "left"
	StateSelf       = "self" // the address turned out to be this node
)

// peer is the outbound side towards one address: the send queue and the
// goroutine that dials, runs and re-dials the connection.
type peer struct {
	m      *Mesh
	addr   string
	cancel context.CancelFunc
	done   chan struct{}

	redial chan struct{} // the peer dialed us: cut the backoff short
	wake   chan struct{} // records or tombstones queued
	urgent chan struct{} // lookups, keys or snapshot request queued

	mu    sync.Mutex
	recs  []store.Record
	tombs []wire.Tombstone
	keys  map[string]wire.TicketKeys // latest message per ring, see enqueueKeys
	kvs   []clusterstate.Entry
	lims  []ratelimit.Count
	// resendTombs: the tombstone queue overflowed or a batch with
	// tombstones was lost; the next flush sends every live tombstone.
	resendTombs bool
	pending     map[uint64]chan *wire.LookupResponse
	name        string
	state       string
	queued      int // bytes of queued records

	cur    atomic.Pointer[conn] // established connection, nil when offline
	online atomic.Bool
	id     atomic.Uint64
	drops  atomic.Uint64
	sent   atomic.Uint64
	failed atomic.Uint64 // dials (TCP, TLS or Hello) that failed
	// tombResends counts full tombstone re-sends scheduled (queue overflow
	// or a lost batch).
	tombResends atomic.Uint64
	kvSent      atomic.Uint64
	left        atomic.Bool
}

func newPeer(m *Mesh, addr string) *peer {
	return &peer{m: m, addr: addr, done: make(chan struct{}),
		wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1), redial: make(chan struct{}, 1),
		pending: make(map[uint64]chan *wire.LookupResponse), state: StateConnecting}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (p *peer) nameLoad() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.name
}

func (p *peer) setState(s string) {
	p.mu.Lock()
	p.state = s
	p.mu.Unlock()
}

func (p *peer) enqueueRecord(r store.Record) {
	if len(r.State) > wire.MaxStateSize {
		return // not replicable (the receiver would reject the frame)
	}
	size := wire.RecordSize(&r)
	p.mu.Lock()
	if len(p.recs) >= p.m.cfg.QueueRecords || p.queued+size > p.m.cfg.QueueBytes {
		p.mu.Unlock()
		p.drops.Add(1)
		p.m.stats.drops.Add(1)
		return
	}
	p.recs = append(p.recs, r)
	p.queued += size
	big := p.queued >= p.m.cfg.BatchBytes
	p.mu.Unlock()
	switch c := p.cur.Load(); {
	case big:
		signal(p.urgent)
	case c != nil && c.flushInline():
	default:
		signal(p.wake)
	}
}

// enqueueTomb queues a revocation. Tombstones are never dropped: when the
// queue holds QueueRecords of them, it is emptied and the peer is sent
// every live tombstone of the store instead (resendTombs), which includes
// those.
func (p *peer) enqueueTomb(t wire.Tombstone) {
	p.mu.Lock()
	if p.resendTombs || len(p.tombs) >= p.m.cfg.QueueRecords {
		p.tombs = p.tombs[:0]
		p.resendTombs = true
		p.mu.Unlock()
		p.tombResends.Add(1)
		signal(p.urgent)
		return
	}
	p.tombs = append(p.tombs, t)
	p.mu.Unlock()
	signal(p.urgent) // revocations go out before records, unbatched
}

// lostTombs is called when tombstones taken from the queue were not
// delivered (the connection failed): the peer gets every tombstone again.
func (p *peer) lostTombs() {
	p.mu.Lock()
	p.resendTombs = true
	p.mu.Unlock()
	p.tombResends.Add(1)
}

// enqueueKV queues a key-value entry. Entries share the record bound
// (QueueRecords, QueueBytes) with session records.
func (p *peer) enqueueKV(e clusterstate.Entry) {
	size := wire.KVEntrySize(&e)
	p.mu.Lock()
	if len(p.recs)+len(p.kvs) >= p.m.cfg.QueueRecords || p.queued+size > p.m.cfg.QueueBytes {
		p.mu.Unlock()
		p.m.stats.kvDrops.Add(1)
		return
	}
	p.kvs = append(p.kvs, e)
	p.queued += size
	p.mu.Unlock()
	signal(p.wake)
}

// maxQueuedCounts bounds the request-limit counts queued for one peer
// (1.5 MiB encoded): past it, reports are dropped whole.
const maxQueuedCounts = 1 << 16

func (p *peer) enqueueLimits(cs []ratelimit.Count) {
	p.mu.Lock()
	if len(p.lims)+len(cs) > maxQueuedCounts {
		p.mu.Unlock()
		p.m.stats.limitDrops.Add(uint64(len(cs)))
		return
	}
	p.lims = append(p.lims, cs...)
	p.mu.Unlock()
	signal(p.wake)
}

// enqueueKeys queues a ring's keys, replacing the ring's keys still
// queued: only its latest keys matter. The queue holds one entry per ring,
// bounded by the rings the session layer keeps.
func (p *peer) enqueueKeys(m wire.TicketKeys) {
	p.mu.Lock()
	if p.keys == nil {
		p.keys = make(map[string]wire.TicketKeys)
	}
	p.keys[m.Ring] = m
	p.mu.Unlock()
	signal(p.urgent)
}

// lookup sends a point lookup and waits for the answer or ctx.
func (p *peer) lookup(ctx context.Context, id uint64, key store.Key) (store.Record, bool, error) {
	ch := make(chan *wire.LookupResponse, 1)
	p.mu.Lock()
	if len(p.pending) >= 1024 {
		p.mu.Unlock()
		return store.Record{}, false, errors.New("mesh: too many lookups in flight")
	}
	p.pending[id] = ch
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
	}
	c := p.cur.Load()
	if c == nil {
		forget()
		return store.Record{}, false, ErrNoPeer
	}
	if err := c.writeLookup(ctx, &wire.LookupRequest{ID: id, Key: key}); err != nil {
		forget()
		return store.Record{}, false, err
	}
	select {
	case r := <-ch:
		return r.Record, r.Found, nil
	case <-ctx.Done():
		forget()
		return store.Record{}, false, ctx.Err()
	}
}

func (p *peer) deliver(r *wire.LookupResponse) {
	p.mu.Lock()
	ch := p.pending[r.ID]
	delete(p.pending, r.ID)
	p.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// batch is what one flush takes from the queue.
type batch struct {
	recs     []store.Record
	tombs    []wire.Tombstone
	keys     map[string]wire.TicketKeys
	kvs      []clusterstate.Entry
	lims     []ratelimit.Count
	allTombs bool // send every live tombstone (see enqueueTomb)
}

// take empties the queue into b, reusing b's slices.
func (p *peer) take(b *batch) {
	p.mu.Lock()
	b.recs, p.recs = p.recs, b.recs[:0]
	b.tombs, p.tombs = p.tombs, b.tombs[:0]
	b.keys, p.keys = p.keys, nil
	b.allTombs, p.resendTombs = p.resendTombs, false
	b.kvs, p.kvs = p.kvs, b.kvs[:0]
	b.lims, p.lims = p.lims, b.lims[:0]
	p.queued = 0
	p.mu.Unlock()
}

// run dials, serves and re-dials with exponential backoff and jitter until
// ctx is done.
func (p *peer) run(ctx context.Context) {
	defer close(p.done)
	backoff := p.m.cfg.ReconnectMin
	for ctx.Err() == nil {
		p.setState(StateConnecting)
		c, err := p.dial(ctx)
		if errors.Is(err, errSelf) {
			p.setState(StateSelf) // stays in the set, never dialed again
			<-ctx.Done()
			return
		}
		if err == nil {
			backoff = p.m.cfg.ReconnectMin
			p.serve(ctx, c)
		} else if ctx.Err() == nil {
			p.failed.Add(1)
			p.m.cfg.Log.V(1).Info("mesh dial failed", "peer", p.addr, "err", err.Error())
		}
		if ctx.Err() != nil {
			return
		}
		wait := backoff
		if p.left.Load() {
			wait = p.m.cfg.ReconnectMax
			p.setState(StateLeft)
		} else {
			p.setState(StateBackoff)
		}
		wait = wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			backoff = min(backoff*2, p.m.cfg.ReconnectMax)
		case <-p.redial: // it is back (e.g. restarted): dial now
			t.Stop()
			backoff = p.m.cfg.ReconnectMin
		}
	}
}

// dial connects, does the TLS handshake and the Hello exchange, all under
// DialTimeout.
func (p *peer) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.m.cfg.DialTimeout)
	defer cancel()
	// From the listen IP when it is a specific one: the peer's admission
	// recognises its peer set's addresses (accept.go), and a replica's
	// listen IP is what the others have in theirs.
	d := net.Dialer{LocalAddr: p.m.dialFrom}
	raw, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", p.addr, err)
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	tc := tls.Client(countConn{Conn: raw, s: &p.m.stats}, p.m.clientTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mesh: tls handshake with %s: %w", p.addr, err)
	}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 &&
		certs[0].Subject.CommonName == p.m.cfg.NodeName {
		raw.Close()
		return nil, errSelf // our own address under another spelling
	}
	c := newConn(p.m, tc, p)
	if err := c.writeMsg(p.m.hello()); err != nil {
		raw.Close()
		return nil, err
	}
	h, err := c.readHello()
	if err != nil {
		raw.Close()
		return nil, err
	}
	p.mu.Lock()
	p.name = h.NodeName
	p.mu.Unlock()
	p.id.Store(NodeID(h.NodeName))
	p.left.Store(false)
	return c, nil
}

// serve runs an established outbound connection until it fails or ctx ends.
func (p *peer) serve(ctx context.Context, c *conn) {
	p.online.Store(true)
	p.setState(StateOnline)
	p.m.cfg.Log.V(1).Info("mesh peer online", "peer", p.addr, "name", c.peerName)
	for _, keys := range p.m.cfg.Handler.TicketKeys() {
		p.enqueueKeys(keys)
	}
	snap := p.m.sync.claim()
	if snap {
		c.snapInitial = true
		id := p.m.reqID.Add(1)
		c.snapID.Store(id)
		c.queueResp(&wire.SnapshotRequest{ID: id})
	}
	p.cur.Store(c)
	c.run(ctx)
	p.cur.Store(nil)
	p.online.Store(false)
	if snap {
		p.m.sync.release()
	}
	// The reader has exited: snapInitial is ours to read. A re-sync cut
	// short is asked for again (an initial sync moves to the next peer).
	if c.snapID.Load() != 0 && !c.snapInitial {
		p.m.markResync(c.peerName)
	}
	p.m.cfg.Log.V(1).Info("mesh peer offline", "peer", p.addr)
}
