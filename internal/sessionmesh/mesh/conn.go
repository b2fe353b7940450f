package mesh

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Rejection reasons (metric label values).
const (
	RejectNoClientCert = "no_client_cert"
	RejectBadCert      = "bad_cert"
	RejectHandshake    = "tls_handshake"
	RejectHello        = "bad_hello"
	RejectCluster      = "cluster_mismatch"
	RejectVersion      = "version_mismatch"
	RejectName         = "name_mismatch"
	RejectSelf         = "self"
	RejectTooMany      = "too_many_connections"
	RejectMalformed    = "malformed_frame"
	RejectTooLarge     = "frame_too_large"
)

// RejectReasons returns every rejection reason, so metrics can export
// zero-valued series up front.
func RejectReasons() []string {
	return []string{RejectNoClientCert, RejectBadCert, RejectHandshake, RejectHello, RejectCluster,
		RejectVersion, RejectName, RejectSelf, RejectTooMany, RejectMalformed, RejectTooLarge}
}

var errSelf = errors.New("mesh: connected to self")

// conn is one established mesh connection. Its writer runs in the owner
// goroutine (run), its reader in a goroutine run starts and joins.
type conn struct {
	m        *Mesh
	tc       *tls.Conn
	peer     *peer // outbound only
	peerName string
	fr       *wire.Reader
	resp     chan wire.Message // snapshot requests for the writer; bounded

	// snapID is the id of the snapshot requested on this outbound
	// connection and not yet ended (0: none). The writer sets it, the
	// reader clears it on SnapshotEnd.
	snapID atomic.Uint64
	// snapInitial marks that snapID is the node's initial sync (set before
	// run; then read and cleared by the reader only).
	snapInitial bool

	// wmu serializes writers: the owner goroutine's batches and heartbeats,
	// and point lookups written directly by the requesting handshake
	// (outbound) or the reader answering them (inbound), which saves two
	// goroutine hand-offs on the latency-critical path.
	wmu sync.Mutex
	bw  *bufio.Writer
	buf []byte
}

func newConn(m *Mesh, tc *tls.Conn, p *peer) *conn {
	return &conn{m: m, tc: tc, peer: p, bw: bufio.NewWriterSize(tc, 64<<10),
		fr: wire.NewReader(bufio.NewReaderSize(tc, 64<<10), 0), resp: make(chan wire.Message, 1024)}
}

func (m *Mesh) hello() *wire.Hello {
	return &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		ClusterID: m.cfg.ClusterID, NodeName: m.cfg.NodeName, MeshAddr: m.cfg.AdvertiseAddr}
}

// rejectError carries a rejection reason for metrics.
type rejectError struct {
	reason string
	err    error
}

func (e *rejectError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

func reject(reason string, format string, args ...any) error {
	return &rejectError{reason: reason, err: fmt.Errorf(format, args...)}
}

// readHello reads and validates the peer's Hello against our config and
// the peer certificate. The deadline must already be set.
func (c *conn) readHello() (*wire.Hello, error) {
	msg, err := c.fr.ReadMessage()
	if err != nil {
		return nil, reject(RejectHello, "read hello: %w", err)
	}
	h, ok := msg.(*wire.Hello)
	if !ok {
		return nil, reject(RejectHello, "first message is %v", msg.Type())
	}
	if _, ok := wire.Negotiate(wire.MinVersion, wire.MaxVersion, h.MinVersion, h.MaxVersion); !ok {
		return nil, reject(RejectVersion, "peer speaks %d..%d", h.MinVersion, h.MaxVersion)
	}
	if h.ClusterID != c.m.cfg.ClusterID {
		return nil, reject(RejectCluster, "peer cluster %q", h.ClusterID)
	}
	if h.NodeName == c.m.cfg.NodeName {
		return nil, &rejectError{reason: RejectSelf, err: errSelf}
	}
	certs := c.tc.ConnectionState().PeerCertificates
	if len(certs) == 0 || certs[0].Subject.CommonName != h.NodeName {
		return nil, reject(RejectName, "hello name %q does not match certificate", h.NodeName)
	}
	c.peerName = h.NodeName
	return h, nil
}

// writeMsg writes one frame and flushes it, under the write lock.
func (c *conn) writeMsg(msg wire.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeMsgLocked(msg)
}

func (c *conn) writeMsgLocked(msg wire.Message) error {
	c.setWriteDeadline()
	if err := c.writeFrame(msg); err != nil {
		return fmt.Errorf("mesh: write: %w", err)
	}
	return c.bw.Flush()
}

// writeLookup writes a lookup request from the requesting goroutine. It
// gives up when ctx ends before the write lock is free (a large batch is
// being written), rather than delay a handshake.
func (c *conn) writeLookup(ctx context.Context, req *wire.LookupRequest) error {
	for !c.wmu.TryLock() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		runtime.Gosched()
	}
	defer c.wmu.Unlock()
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

// run owns an established connection: it starts the reader, runs the
// writer and, on any end, closes the socket and waits for the reader.
func (c *conn) run(ctx context.Context) {
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(cctx, func() { c.tc.NetConn().Close() })
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

func (c *conn) countReadErr(err error) {
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		c.m.stats.reject(RejectTooLarge)
	case errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrUnknownType), errors.Is(err, errProtocol):
		c.m.stats.reject(RejectMalformed)
	}
}

var errProtocol = errors.New("mesh: unexpected message")

func (c *conn) readLoop() error {
	nc := c.tc.NetConn()
	for {
		nc.SetReadDeadline(time.Now().Add(c.m.cfg.DeadAfter))
		msg, err := c.fr.ReadMessage()
		if err != nil {
			return err
		}
		c.m.stats.msgsIn.Add(1)
		if err := c.handle(msg); err != nil {
			return err
		}
	}
}

var errGoodbye = errors.New("mesh: peer left")

func (c *conn) handle(msg wire.Message) error {
	h := c.m.cfg.Handler
	switch v := msg.(type) {
	case *wire.Insert:
		if f := c.m.cfg.OnReplicated; f != nil {
			now := time.Now().UnixNano()
			for i := range v.Records {
				f(time.Duration(now - v.Records[i].Created))
			}
		}
		h.HandleInsert(c.peerName, v.Records)
	case *wire.Delete:
		h.HandleDelete(c.peerName, v.Tombstones)
	case *wire.TicketKeys:
		h.HandleTicketKeys(c.peerName, v.Keys)
	case *wire.Heartbeat:
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
		h.HandleInsert(c.peerName, v.Records)
	case *wire.SnapshotEnd:
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

// writeLoop sends queued messages, batches and heartbeats until the
// connection or the mesh ends. On a clean leave it sends Goodbye.
func (c *conn) writeLoop(ctx, cctx context.Context) error {
	hb := time.NewTicker(c.m.cfg.HeartbeatInterval)
	defer hb.Stop()
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
	last, lastFlush := time.Now(), time.Time{}
	for {
		var err error
		select {
		case <-ctx.Done():
			if c.m.leave.Load() {
				c.wmu.Lock()
				c.tc.NetConn().SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				c.writeFrame(&wire.Goodbye{Reason: "shutdown"})
				c.bw.Flush()
				c.wmu.Unlock()
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
			if since := time.Since(lastFlush); since >= c.m.cfg.FlushInterval {
				err = c.flushPeer(&b)
				lastFlush = time.Now()
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
			lastFlush = time.Now()
		case now := <-hb.C:
			if c.peer != nil {
				c.maybeResync()
			}
			if now.Sub(last) < c.m.cfg.HeartbeatInterval/2 {
				continue
			}
			err = c.writeMsg(&wire.Heartbeat{Sent: now.UnixNano()})
		}
		if err != nil {
			return err
		}
		last = time.Now()
	}
}

func (c *conn) setWriteDeadline() {
	c.tc.NetConn().SetWriteDeadline(time.Now().Add(c.m.cfg.DeadAfter))
}

func (c *conn) writeResp(msg wire.Message) error {
	if req, ok := msg.(*wire.SnapshotRequest); ok && c.peer == nil {
		return c.streamSnapshot(req.ID)
	}
	return c.writeMsg(msg)
}

// flushPeer writes everything queued for the peer, records in frames of at
// most BatchBytes (or one record if larger). If the connection fails, the
// records taken from the queue are counted as drops (the peer catches up on
// the sessions only through point lookups, or a snapshot when it restarts).
func (c *conn) flushPeer(b *batch) error {
	c.peer.take(b)
	n := len(b.recs) + len(b.tombs)
	err := c.writeBatch(b)
	if err != nil {
		c.peer.drops.Add(uint64(n))
		c.m.stats.drops.Add(uint64(n))
	}
	clear(b.recs)
	b.recs = b.recs[:0]
	return err
}

func (c *conn) writeBatch(b *batch) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.setWriteDeadline()
	if len(b.keys) > 0 {
		if err := c.writeFrame(&wire.TicketKeys{Keys: b.keys}); err != nil {
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
		c.peer.sent.Add(uint64(n))
		recs = recs[n:]
	}
	return c.bw.Flush()
}

// writeFrame buffers one frame without flushing; the caller holds wmu.
func (c *conn) writeFrame(msg wire.Message) error {
	c.buf = wire.AppendFrame(c.buf[:0], msg)
	c.m.stats.msgsOut.Add(1)
	_, err := c.bw.Write(c.buf)
	return err
}

// streamSnapshot sends every live record in chunks, then SnapshotEnd.
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
		chunk = append(chunk, r)
		size += wire.RecordSize(&r)
		count++
		if size >= c.m.cfg.BatchBytes {
			send()
		}
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

// acceptLoop accepts inbound connections until the listener closes.
func (m *Mesh) acceptLoop(ctx context.Context, wg *sync.WaitGroup) {
	sem := make(chan struct{}, m.cfg.MaxInbound)
	for {
		raw, err := m.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: back off, keep serving
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			m.stats.reject(RejectTooMany)
			raw.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			m.serveInbound(ctx, raw)
		})
	}
}

// serveInbound authenticates an inbound connection and serves it.
func (m *Mesh) serveInbound(ctx context.Context, raw net.Conn) {
	raw.SetDeadline(time.Now().Add(m.cfg.DialTimeout))
	tc := tls.Server(countConn{Conn: raw, s: &m.stats}, m.serverTLS)
	hctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		raw.Close()
		if ctx.Err() == nil {
			m.stats.reject(classifyTLS(err))
		}
		return
	}
	c := newConn(m, tc, nil)
	if _, err := c.readHello(); err != nil {
		raw.Close()
		var re *rejectError
		if errors.As(err, &re) {
			m.stats.reject(re.reason)
		}
		m.cfg.Log.V(1).Info("mesh connection rejected", "remote", raw.RemoteAddr().String(), "err", err.Error())
		return
	}
	if err := c.writeMsg(m.hello()); err != nil {
		raw.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	m.peerBack(c.peerName)
	m.inboundUp(c.peerName)
	m.stats.inbound.Add(1)
	c.run(ctx)
	m.stats.inbound.Add(-1)
	m.inboundDown(c.peerName)
}

func classifyTLS(err error) string {
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cv):
		return RejectBadCert
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return RejectNoClientCert
	case errors.Is(err, io.EOF), errors.Is(err, os.ErrDeadlineExceeded):
		return RejectHandshake
	}
	return RejectHandshake
}

// peerLeft marks the outbound peer with that name as left, so it is
// re-dialed slowly until it returns.
func (m *Mesh) peerLeft(name string) {
	m.eachPeer(func(p *peer) {
		if p.nameLoad() == name {
			p.left.Store(true)
		}
	})
}

// peerBack wakes the outbound side towards a peer that just dialed us, so
// a restarted peer is reconnected at once instead of after the backoff.
func (m *Mesh) peerBack(name string) {
	m.eachPeer(func(p *peer) {
		if !p.online.Load() && p.nameLoad() == name {
			p.left.Store(false)
			signal(p.redial)
		}
	})
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
