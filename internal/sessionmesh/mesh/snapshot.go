package mesh

import (
	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Snapshots: the inbound side streams every live record on request; the
// outbound side that asked (initial sync, or a re-sync, resync.go) merges the
// chunks through the Handler and is told the end.

// streamSnapshot sends every live tombstone (as Delete frames: a joiner
// must not take a revoked session from a late insert or another snapshot),
// then every live record in chunks of at most BatchBytes of records (or one
// record if larger), then SnapshotEnd.
func (c *conn) streamSnapshot(id uint64) error {
	c.lock()
	c.setWriteDeadline()
	err := c.writeTombstones()
	if err == nil {
		err = c.bw.Flush()
	}
	c.unlock()
	if err != nil {
		return err
	}
	var chunk []store.Record
	var count uint64
	size := 0
	send := func() {
		err = c.writeMsg(&wire.SnapshotChunk{ID: id, Records: chunk})
		chunk, size = chunk[:0], 0
	}
	c.m.cfg.Handler.Snapshot(func(r store.Record) bool {
		if len(r.State) > wire.MaxStateSize {
			return true // stays local to this node
		}
		rs := wire.RecordSize(&r)
		if len(chunk) > 0 && size+rs > c.m.cfg.BatchBytes {
			send()
		}
		chunk = append(chunk, r)
		size += rs
		count++
		return err == nil
	})
	if err == nil && len(chunk) > 0 {
		send()
	}
	if err != nil {
		return err
	}
	if err := c.streamKV(id); err != nil {
		return err
	}
	return c.writeMsg(&wire.SnapshotEnd{ID: id, Count: count})
}

// streamKV sends every key-value entry, tombstones included, in
// KVSnapshotChunks, when the connection's version carries them. They go
// before SnapshotEnd, so a joining node has every zone before it reports
// ready.
func (c *conn) streamKV(id uint64) error {
	kv := c.m.cfg.KV
	if kv == nil || !wire.Supports(c.version, wire.TypeKVSnapshotChunk) {
		return nil
	}
	var chunk []clusterstate.Entry
	size := 0
	var err error
	send := func() {
		err = c.writeMsg(&wire.KVSnapshotChunk{ID: id, Entries: chunk})
		chunk, size = chunk[:0], 0
	}
	kv.RangeKV(func(e clusterstate.Entry) bool {
		es := wire.KVEntrySize(&e)
		if len(chunk) > 0 && size+es > c.m.cfg.BatchBytes {
			send()
		}
		chunk = append(chunk, e)
		size += es
		return err == nil
	})
	if err == nil && len(chunk) > 0 {
		send()
	}
	return err
}

// snapshotEnd ends the snapshot requested on this outbound connection.
func (c *conn) snapshotEnd(v *wire.SnapshotEnd) error {
	if c.peer == nil || v.ID == 0 || v.ID != c.snapID.Load() {
		return errProtocol
	}
	c.snapID.Store(0)
	if c.snapInitial {
		c.snapInitial = false // later snapshots on this connection are re-syncs
		c.m.sync.finish()
		c.m.cfg.Log.Info("mesh snapshot received", "peer", c.peerName, "records", v.Count)
	} else {
		c.m.resyncs.Add(1)
		c.m.cfg.Log.Info("mesh re-sync received", "peer", c.peerName, "records", v.Count)
	}
	return nil
}

// maxTombsPerFrame bounds the tombstones of one Delete frame (24 bytes
// each: well within a frame).
const maxTombsPerFrame = 4096

// writeTombstones buffers every live tombstone of the Handler as Delete
// frames; the caller holds the write lock and flushes. Each frame renews
// the write deadline (there may be many).
func (c *conn) writeTombstones() error {
	var ts []wire.Tombstone
	var err error
	flush := func() {
		c.setWriteDeadline()
		err = c.writeFrame(&wire.Delete{Tombstones: ts})
		ts = ts[:0]
	}
	c.m.cfg.Handler.Tombstones(func(t wire.Tombstone) bool {
		ts = append(ts, t)
		if len(ts) == maxTombsPerFrame {
			flush()
		}
		return err == nil
	})
	if err == nil && len(ts) > 0 {
		flush()
	}
	return err
}
