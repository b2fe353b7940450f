package mesh

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// conn is one established mesh connection. Its writer runs in the owner
// goroutine (run, writer.go), its reader (reader.go) in a goroutine run
// starts and joins. How connections are established is in handshake.go
// (both roles) and accept.go (inbound).
type conn struct {
	m        *Mesh
	tc       *tls.Conn
	nc       net.Conn // the raw connection under tc: deadlines and closing
	peer     *peer    // outbound only
	peerName string
	fr       *wire.Reader
	resp     chan wire.Message // snapshot requests for the writer; bounded
	// version is the protocol version frames are written in: the highest
	// this node announces until the Hello exchange, then the negotiated one
	// (set by readHello before the connection is shared).
	version uint16

	// snapID is the id of the snapshot requested on this outbound
	// connection and not yet ended (0: none). The writer sets it, the
	// reader clears it on SnapshotEnd.
	snapID atomic.Uint64
	// snapInitial marks that snapID is the node's initial sync (set before
	// run; then read and cleared by the reader only).
	snapInitial bool

	// clock is the reader's estimate of the peer's clock (reader only).
	clock peerClock

	// wlock serializes writers: the owner goroutine's batches and
	// heartbeats, and point lookups written directly by the requesting
	// handshake (outbound) or by the reader answering them (inbound), which
	// saves two goroutine hand-offs on the latency-critical path. It is a
	// one-slot channel so that a lookup can give up when its context ends.
	wlock chan struct{}
	bw    *bufio.Writer
	buf   []byte

	// lastFlush is when the peer's queue was last written (unix ns), by
	// the owner goroutine or inline (flushInline); it tells an idle
	// connection from a busy one.
	lastFlush atomic.Int64
	// inline is flushInline's batch, reused; only touched under wlock.
	inline batch
}

func newConn(m *Mesh, tc *tls.Conn, p *peer) *conn {
	return &conn{m: m, tc: tc, nc: tc.NetConn(), peer: p, bw: bufio.NewWriterSize(tc, 64<<10),
		fr: wire.NewReader(bufio.NewReaderSize(tc, 64<<10), 0), resp: make(chan wire.Message, 1024),
		wlock: make(chan struct{}, 1), version: m.maxVersion()}
}

func (c *conn) lock()   { c.wlock <- struct{}{} }
func (c *conn) unlock() { <-c.wlock }

// lockCtx takes the write lock unless ctx ends first.
func (c *conn) lockCtx(ctx context.Context) error {
	select {
	case c.wlock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run owns an established connection: it starts the reader, runs the
// writer and, on any end, closes the socket and waits for the reader.
func (c *conn) run(ctx context.Context) {
	c.m.conns.add(c)
	defer c.m.conns.remove(c)
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(cctx, func() { c.nc.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		err := c.readLoop()
		c.countReadErr(err)
	})
	err := c.writeLoop(ctx, cctx)
	if err != nil && cctx.Err() == nil {
		c.m.cfg.Log.V(1).Info("mesh write failed", "peer", c.peerName, "err", err.Error())
	}
	cancel()
	wg.Wait()
}

func (c *conn) setWriteDeadline() {
	c.nc.SetWriteDeadline(time.Now().Add(c.m.cfg.DeadAfter))
}

// writeMsg writes one frame and flushes it, under the write lock.
func (c *conn) writeMsg(msg wire.Message) error {
	c.lock()
	defer c.unlock()
	return c.writeMsgLocked(msg)
}

func (c *conn) writeMsgLocked(msg wire.Message) error {
	c.setWriteDeadline()
	if err := c.writeFrame(msg); err != nil {
		return fmt.Errorf("mesh: write: %w", err)
	}
	return c.bw.Flush()
}

// writeFrame buffers one frame without flushing; the caller holds the write
// lock. A message type the negotiated version does not carry is not sent
// (the peer did not announce it) and counted.
func (c *conn) writeFrame(msg wire.Message) error {
	if !wire.Supports(c.version, msg.Type()) {
		c.m.stats.unsupported.Add(1)
		return nil
	}
	c.buf = wire.AppendFrameVersion(c.buf[:0], c.version, msg)
	c.m.stats.msgsOut.Add(1)
	_, err := c.bw.Write(c.buf)
	return err
}

// countConn counts raw bytes in and out.
type countConn struct {
	net.Conn
	s *counters
}

func (c countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.s.bytesIn.Add(uint64(n))
	return n, err
}

func (c countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.s.bytesOut.Add(uint64(n))
	return n, err
}
