package mesh

import (
	"context"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// The writer side of a connection, run by its owner goroutine: heartbeats,
// the peer's queue in batches (outbound), snapshot streams and other queued
// answers (inbound).

// writeLookup writes a lookup request from the requesting goroutine. It
// gives up when ctx ends before the write lock is free (a large batch is
// being written), rather than delay a handshake.
func (c *conn) writeLookup(ctx context.Context, req *wire.LookupRequest) error {
	if err := c.lockCtx(ctx); err != nil {
		return err
	}
	defer c.unlock()
	return c.writeMsgLocked(req)
}

// queueResp hands a message to the writer, dropping it if the writer is
// far behind (the requester times out).
func (c *conn) queueResp(msg wire.Message) {
	select {
	case c.resp <- msg:
	default:
		c.m.stats.drops.Add(1)
	}
}

// writeLoop sends queued messages, batches and heartbeats until the
// connection or the mesh ends. On a clean leave it sends Goodbye.
func (c *conn) writeLoop(ctx, cctx context.Context) error {
	hb := time.NewTicker(c.m.cfg.HeartbeatInterval)
	defer hb.Stop()
	// A heartbeat first: the peer relates our clock to its own with it
	// before our first record arrives (see peerClock).
	if err := c.writeMsg(&wire.Heartbeat{Sent: time.Now().UnixNano()}); err != nil {
		return err
	}
	var wake, urgent chan struct{}
	if c.peer != nil {
		wake, urgent = c.peer.wake, c.peer.urgent
		signal(wake) // flush whatever queued while disconnected
		c.maybeResync()
	}
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	var b batch
	armed := false
	for {
		var err error
		select {
		case <-ctx.Done():
			if c.m.leave.Load() {
				c.lock()
				c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				c.writeFrame(&wire.Goodbye{Reason: "shutdown"})
				c.bw.Flush()
				c.unlock()
			}
			return nil
		case <-cctx.Done():
			return nil
		case msg := <-c.resp:
			err = c.writeResp(msg)
		case <-urgent:
			flush.Stop()
			armed = false
			c.maybeResync()
			err = c.flushPeer(&b)
		case <-wake:
			// Idle connection: send at once (latency). Busy: batch until
			// FlushInterval after the last flush (throughput).
			if since := c.sinceFlush(); since >= c.m.cfg.FlushInterval {
				err = c.flushPeer(&b)
			} else if !armed {
				armed = true
				flush.Reset(c.m.cfg.FlushInterval - since)
				continue
			} else {
				continue
			}
		case <-flush.C:
			armed = false
			err = c.flushPeer(&b)
		case now := <-hb.C:
			if c.peer != nil {
				c.maybeResync()
			}
			// Also on a busy connection: the peer's clock estimate and its
			// read deadline both follow heartbeats.
			err = c.writeMsg(&wire.Heartbeat{Sent: now.UnixNano()})
		}
		if err != nil {
			return err
		}
	}
}

func (c *conn) writeResp(msg wire.Message) error {
	if req, ok := msg.(*wire.SnapshotRequest); ok && c.peer == nil {
		return c.streamSnapshot(req.ID)
	}
	return c.writeMsg(msg)
}

// flushPeer writes, for the owner goroutine, everything queued for the
// peer, records in frames of at most BatchBytes (or one record if larger). Records count as sent once the
// frames holding them were flushed to the connection; if writing or
// flushing fails, every record taken from the queue counts as dropped
// instead (the peer catches up on them only through point lookups, or a
// snapshot when it reconnects), never as both. Tombstones are never
// dropped: a failed batch that held any makes the next connection send
// every live tombstone.
func (c *conn) flushPeer(b *batch) error {
	c.lock()
	defer c.unlock()
	c.lastFlush.Store(time.Now().UnixNano())
	c.setWriteDeadline()
	return c.flushPeerLocked(b)
}

// sinceFlush is the time since the peer's queue was last written.
func (c *conn) sinceFlush() time.Duration {
	return time.Duration(time.Now().UnixNano() - c.lastFlush.Load())
}

// flushInline writes the peer's queue from the calling goroutine (the
// handshake that issued a session) when the connection is idle: nothing
// written for FlushInterval and no other writer holding the lock. That
// saves waking the owner goroutine, which on a lightly loaded node costs a
// goroutine hand-off and an OS thread wake-up per record, more than the
// write itself. The write is bounded by InlineWriteTimeout: only a peer
// that stopped reading long enough to fill the socket buffer makes it
// wait, and such a connection is closed (the peer reconnects and catches
// up as after any failure). It reports false when the connection is busy;
// the caller then wakes the owner, which batches.
func (c *conn) flushInline() bool {
	if c.sinceFlush() < c.m.cfg.FlushInterval {
		return false
	}
	select {
	case c.wlock <- struct{}{}:
	default:
		return false
	}
	defer c.unlock()
	now := time.Now()
	c.lastFlush.Store(now.UnixNano())
	c.nc.SetWriteDeadline(now.Add(c.m.cfg.InlineWriteTimeout))
	if err := c.flushPeerLocked(&c.inline); err != nil {
		c.m.cfg.Log.V(1).Info("mesh inline write failed", "peer", c.peerName, "err", err.Error())
		c.nc.Close() // the reader fails and ends the connection's run
	}
	return true
}

// flushPeerLocked is flushPeer under the write lock.
func (c *conn) flushPeerLocked(b *batch) error {
	c.peer.take(b)
	n := uint64(len(b.recs))
	kvs := uint64(len(b.kvs))
	lims := uint64(len(b.lims))
	limitsOK := wire.Supports(c.version, wire.TypeLimitCounts)
	err := c.writeBatch(b)
	switch {
	case err != nil || !limitsOK:
		c.m.stats.limitDrops.Add(lims)
	default:
		c.m.stats.limitSent.Add(lims)
	}
	switch {
	case err != nil:
		c.peer.drops.Add(n)
		c.m.stats.drops.Add(n)
		c.m.stats.kvDrops.Add(kvs)
		if len(b.tombs) > 0 || b.allTombs {
			c.peer.lostTombs() // never dropped: sent again, all of them
		}
	case !wire.Supports(c.version, wire.TypeKVUpdate):
		c.peer.sent.Add(n)
		c.m.stats.kvDrops.Add(kvs) // the peer is too old for them
	default:
		c.peer.sent.Add(n)
		c.peer.kvSent.Add(kvs)
	}
	clear(b.recs)
	b.recs = b.recs[:0]
	clear(b.kvs)
	b.kvs = b.kvs[:0]
	b.lims = b.lims[:0]
	return err
}

// writeBatch writes b and flushes, under the write lock. The caller sets
// the write deadline.
func (c *conn) writeBatch(b *batch) error {
	for ring, keys := range b.keys {
		if ring != "" && c.version < wire.RingsSince {
			c.m.stats.unsupported.Add(1) // the peer keeps one ring: ours would replace it
			continue
		}
		if err := c.writeFrame(&keys); err != nil {
			return err
		}
	}
	if b.allTombs {
		b.tombs = b.tombs[:0] // included in what follows
		if err := c.writeTombstones(); err != nil {
			return err
		}
	}
	for len(b.tombs) > 0 {
		n := min(len(b.tombs), 4096)
		if err := c.writeFrame(&wire.Delete{Tombstones: b.tombs[:n]}); err != nil {
			return err
		}
		b.tombs = b.tombs[n:]
	}
	recs := b.recs
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && (n == 0 || size+wire.RecordSize(&recs[n]) <= c.m.cfg.BatchBytes) {
			size += wire.RecordSize(&recs[n])
			n++
		}
		if err := c.writeFrame(&wire.Insert{Records: recs[:n]}); err != nil {
			return err
		}
		recs = recs[n:]
	}
	if wire.Supports(c.version, wire.TypeKVUpdate) {
		for es := b.kvs; len(es) > 0; {
			n := kvBatch(es, c.m.cfg.BatchBytes)
			if err := c.writeFrame(&wire.KVUpdate{Entries: es[:n]}); err != nil {
				return err
			}
			es = es[n:]
		}
	}
	if wire.Supports(c.version, wire.TypeLimitCounts) {
		per := max(1, min(c.m.cfg.BatchBytes/wire.LimitCountSize, wire.MaxLimitCounts))
		for cs := b.lims; len(cs) > 0; {
			n := min(len(cs), per)
			if err := c.writeFrame(&wire.LimitCounts{Counts: cs[:n]}); err != nil {
				return err
			}
			cs = cs[n:]
		}
	}
	return c.bw.Flush()
}

// kvBatch returns how many of es go into one frame of at most budget
// entry bytes (at least one: an entry is far smaller than a frame).
func kvBatch(es []clusterstate.Entry, budget int) int {
	n, size := 0, 0
	for n < len(es) && (n == 0 || size+wire.KVEntrySize(&es[n]) <= budget) {
		size += wire.KVEntrySize(&es[n])
		n++
	}
	return n
}
