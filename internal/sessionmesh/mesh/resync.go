package mesh

import (
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Re-sync after a lost connection.
//
// Records travel only on their issuer's outbound connection, so the
// records a node can have missed from peer X are exactly those X sent on
// the connection X dialed to us (our inbound from X). When that inbound
// connection is lost (crash, partition, reset) and later re-established,
// batches may have been dropped in between (X counts them as drops). The
// node then asks X for a snapshot on its own outbound connection to X and
// merges it. The store keeps the first writer and honours tombstones, so
// merging a snapshot over records we already hold is idempotent and cannot
// resurrect a revoked session.
//
// The request is keyed by peer name in resyncState and picked up by the
// writer of the outbound connection to that peer: at once if it is online
// (the peer's urgent channel is signalled), otherwise when it next comes
// online. A re-sync cut short by a connection loss is requested again. At
// most one snapshot is in flight per outbound connection.

// maxResyncNames bounds the names remembered in resyncState. Peer names
// change with every pod in Kubernetes; a node that has seen more departed
// peers than this forgets them all (it may then miss one re-sync, and the
// point lookup still covers the sessions).
const maxResyncNames = 4096

// resyncState is guarded by Mesh.resyncMu.
type resyncState struct {
	lost map[string]bool // an inbound connection from the name ended
	want map[string]bool // re-sync requested, not yet sent
}

// inboundUp records an established inbound connection from name. If an
// earlier one from the same name was lost, a re-sync from it is requested.
func (m *Mesh) inboundUp(name string) {
	m.resyncMu.Lock()
	again := m.resync.lost[name]
	delete(m.resync.lost, name)
	m.resyncMu.Unlock()
	if again {
		m.markResync(name)
	}
}

// inboundDown records the end of an inbound connection from name.
func (m *Mesh) inboundDown(name string) {
	m.resyncMu.Lock()
	if len(m.resync.lost) >= maxResyncNames {
		clear(m.resync.lost)
	}
	m.resync.lost[name] = true
	m.resyncMu.Unlock()
}

// markResync asks the outbound connection to name for a snapshot.
func (m *Mesh) markResync(name string) {
	m.resyncMu.Lock()
	if len(m.resync.want) >= maxResyncNames {
		clear(m.resync.want)
	}
	m.resync.want[name] = true
	m.resyncPending.Store(true)
	m.resyncMu.Unlock()
	m.eachPeer(func(p *peer) {
		if p.nameLoad() == name {
			signal(p.urgent)
		}
	})
}

// maybeResync runs in the writer of an outbound connection: it sends a
// snapshot request if one is wanted from this peer and none is in flight
// on this connection. The fast path is one atomic load.
func (c *conn) maybeResync() {
	if !c.m.resyncPending.Load() || c.snapID.Load() != 0 {
		return
	}
	c.m.resyncMu.Lock()
	want := c.m.resync.want[c.peerName]
	delete(c.m.resync.want, c.peerName)
	c.m.resyncPending.Store(len(c.m.resync.want) > 0)
	c.m.resyncMu.Unlock()
	if !want {
		return
	}
	id := c.m.reqID.Add(1)
	c.snapID.Store(id)
	c.queueResp(&wire.SnapshotRequest{ID: id})
}
