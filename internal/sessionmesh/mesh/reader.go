package mesh

import (
	"errors"
	"fmt"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// The reader side of a connection: it decodes frames and hands them to the
// Handler, answers lookups (inbound), and routes answers and snapshots to
// their requester (outbound).

var (
	errProtocol = errors.New("mesh: unexpected message")
	errGoodbye  = errors.New("mesh: peer left")
)

func (c *conn) readLoop() error {
	for {
		c.nc.SetReadDeadline(time.Now().Add(c.m.cfg.DeadAfter))
		msg, err := c.fr.ReadMessage()
		if err != nil {
			return err
		}
		c.m.stats.msgsIn.Add(1)
		if err := c.handle(msg, time.Now()); err != nil {
			return err
		}
	}
}

func (c *conn) countReadErr(err error) {
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		c.m.stats.reject(RejectTooLarge)
	case errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrUnknownType), errors.Is(err, errProtocol):
		c.m.stats.reject(RejectMalformed)
	}
}

// handle processes one message received at now.
func (c *conn) handle(msg wire.Message, now time.Time) error {
	h := c.m.cfg.Handler
	switch v := msg.(type) {
	case *wire.Insert:
		if f := c.m.cfg.OnReplicated; f != nil {
			for i := range v.Records {
				if d, ok := c.clock.since(v.Records[i].Created, now); ok {
					f(d)
				}
			}
		}
		h.HandleInsert(c.peerName, v.Records)
	case *wire.Delete:
		h.HandleDelete(c.peerName, v.Tombstones)
	case *wire.TicketKeys:
		h.HandleTicketKeys(c.peerName, *v)
	case *wire.Heartbeat:
		c.clock.heartbeat(v.Sent, now)
	case *wire.LookupRequest:
		if c.peer != nil {
			return errProtocol
		}
		r, ok := h.Lookup(v.Key)
		if ok && len(r.State) > wire.MaxStateSize {
			ok, r = false, store.Record{} // not replicable; the peer does a full handshake
		}
		return c.writeMsg(&wire.LookupResponse{ID: v.ID, Found: ok, Record: r})
	case *wire.SnapshotRequest:
		if c.peer != nil {
			return errProtocol
		}
		c.queueResp(v)
	case *wire.LookupResponse:
		if c.peer == nil {
			return errProtocol
		}
		c.peer.deliver(v)
	case *wire.SnapshotChunk:
		if c.peer == nil || v.ID == 0 || v.ID != c.snapID.Load() {
			return errProtocol
		}
		h.HandleSnapshot(c.peerName, v.Records)
	case *wire.SnapshotEnd:
		return c.snapshotEnd(v)
	case *wire.KVUpdate:
		if c.peer != nil {
			return errProtocol // entries travel on their writer's outbound connection
		}
		if kv := c.m.cfg.KV; kv != nil {
			kv.HandleKV(c.peerName, v.Entries)
		}
	case *wire.KVSnapshotChunk:
		if c.peer == nil || v.ID == 0 || v.ID != c.snapID.Load() {
			return errProtocol
		}
		if kv := c.m.cfg.KV; kv != nil {
			kv.HandleKV(c.peerName, v.Entries)
		}
	case *wire.LimitCounts:
		if c.peer != nil {
			return errProtocol // counts travel on their node's outbound connection
		}
		c.m.stats.limitRecv.Add(uint64(len(v.Counts)))
		if h := c.m.cfg.Limits; h != nil {
			h.HandleLimitCounts(c.peerName, v.Counts)
		}
	case *wire.Goodbye:
		if c.peer != nil {
			c.peer.left.Store(true)
		} else {
			c.m.peerLeft(c.peerName)
		}
		return errGoodbye
	default:
		return fmt.Errorf("%w: %v", errProtocol, msg.Type())
	}
	return nil
}

// peerClockWindow is how many recent heartbeats the clock estimate keeps:
// at one heartbeat per HeartbeatInterval (500 ms) the estimate follows a
// clock step or drift within about 8 s.
const peerClockWindow = 16

// peerClock relates the peer's clock to ours, from the heartbeats it sends.
// A record's Created is the issuer's clock; subtracting it from our clock
// measures the clock offset between the two machines as much as the
// replication delay. Each heartbeat gives recv − Sent = offset + transit;
// the smallest over the window is offset + the fastest transit seen, so
// (recv − Created) − min(recv − Sent) is the replication delay without the
// offset, less the network's minimum one-way delay (tens of microseconds in
// a cluster). Owned by the reader goroutine.
type peerClock struct {
	deltas [peerClockWindow]int64
	n      int // heartbeats seen
}

func (pc *peerClock) heartbeat(sent int64, now time.Time) {
	pc.deltas[pc.n%peerClockWindow] = now.UnixNano() - sent
	pc.n++
}

// since returns the replication delay of a record created at created
// (issuer clock) and received at now, or false before the first heartbeat.
func (pc *peerClock) since(created int64, now time.Time) (time.Duration, bool) {
	if pc.n == 0 {
		return 0, false
	}
	off := pc.deltas[0]
	for _, d := range pc.deltas[1:min(pc.n, peerClockWindow)] {
		off = min(off, d)
	}
	return max(0, time.Duration(now.UnixNano()-created-off)), true
}
