package mesh

import (
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Snapshots: the inbound side streams every live record on request; the
// outbound side that asked (initial sync, or a re-sync, resync.go) merges the
// chunks through the Handler and is told the end.

// streamSnapshot sends every live record in chunks of at most BatchBytes of
// records (or one record if larger), then SnapshotEnd.
func (c *conn) streamSnapshot(id uint64) error {
	var chunk []store.Record
	var count uint64
	size := 0
	var err error
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
	return c.writeMsg(&wire.SnapshotEnd{ID: id, Count: count})
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
