package h2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Error codes (RFC 9113 §7).
const (
	errCodeNo       = http2.ErrCodeNo
	errCodeProtocol = http2.ErrCodeProtocol
	errCodeInternal = http2.ErrCodeInternal
	errCodeFlow     = http2.ErrCodeFlowControl
	errCodeClosed   = http2.ErrCodeStreamClosed
	errCodeFrame    = http2.ErrCodeFrameSize
	errCodeRefused  = http2.ErrCodeRefusedStream
	errCodeCalm     = http2.ErrCodeEnhanceYourCalm
)

const (
	maxWindow = 1<<31 - 1
	// readBufferSize is the connection's read buffer: several frames per
	// read.
	readBufferSize = 32 << 10
	// maxFrameRead is the frame size meshgate accepts (the default; it
	// advertises no other SETTINGS_MAX_FRAME_SIZE).
	maxFrameRead = 16 << 10
	// resetBudget is how many streams a client may reset before their
	// response is complete without completing as many others in between
	// (rapid reset, CVE-2023-44487).
	resetBudget = 200
	// maxEmptyData bounds DATA frames without payload nor END_STREAM on a
	// connection (they cost work and carry nothing).
	maxEmptyData = 1000
	// finalFlushTimeout bounds the last write of a closing connection.
	finalFlushTimeout = time.Second
)

var (
	errConnClosed  = errors.New("h2: connection closed")
	errStreamReset = errors.New("h2: stream reset")
)

// connError is a connection error (RFC 9113 §5.4.1): GOAWAY with code.
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e *connError) Error() string { return "h2: " + e.code.String() + ": " + e.reason }

func protoErr(reason string) error { return &connError{errCodeProtocol, reason} }

// conn is one HTTP/2 connection. The reader goroutine (serve) owns the
// Framer and the fields marked "reader"; everything else is guarded by mu.
type conn struct {
	srv    *Server
	nc     net.Conn
	info   ConnInfo
	scheme string
	client string // client IP as text
	br     *bufio.Reader
	fr     *http2.Framer
	ctx    context.Context // done when the connection ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // running streams

	// reader
	resets     int // rapid-reset budget left
	emptyData  int
	sawSetting bool

	mu    sync.Mutex
	space sync.Cond // signalled on output written, windows opened, streams or the connection ended

	streams map[uint32]*stream // open and half-closed streams
	maxSeen uint32             // highest client stream identifier seen
	active  int                // streams whose handler runs
	closing bool               // GOAWAY sent or received: no new streams
	failed  error              // the connection is over: nothing more is written
	idleDL  bool               // the idle read deadline is set

	out, spare   []byte
	flushing     bool
	flushSoon    bool // a stream yields before writing out (kickAfterYieldLocked)
	closeAfter   bool // close the connection once out is written
	werr         error
	hbuf         bytes.Buffer
	enc          *hpack.Encoder
	peerMaxFrame uint32
	peerInitWin  int64
	sendWin      int64 // connection send window
	recvWin      int   // connection bytes the client may still send
	recvUnacked  int   // connection bytes consumed, not yet returned
}

func newConn(s *Server, nc net.Conn, info ConnInfo) *conn {
	c := &conn{
		srv: s, nc: nc, info: info, scheme: "http",
		br:           bufio.NewReaderSize(nc, readBufferSize),
		streams:      make(map[uint32]*stream),
		resets:       resetBudget,
		peerMaxFrame: 16 << 10,
		peerInitWin:  65535,
		sendWin:      65535,
		recvWin:      s.cfg.ConnWindow,
	}
	if info.TLS {
		c.scheme = "https"
	}
	if info.RemoteAddr.IsValid() {
		c.client = info.RemoteAddr.Addr().String()
	}
	c.space.L = &c.mu
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(maxFrameRead)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = uint32(s.cfg.MaxHeaderBytes)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// serve reads and handles frames until the connection ends.
func (c *conn) serve() {
	defer c.finish()
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.ReadHeaderTimeout))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		if err == nil {
			c.countError("bad_preface")
			c.abort(&connError{errCodeProtocol, "invalid connection preface"})
		}
		return
	}
	cfg := &c.srv.cfg
	c.mu.Lock()
	c.appendSettingsLocked(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(cfg.MaxConcurrentStreams)},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(cfg.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(cfg.MaxHeaderBytes)},
	)
	if cfg.ConnWindow > 65535 {
		c.appendWindowUpdateLocked(0, cfg.ConnWindow-65535)
	}
	c.mu.Unlock()
	for {
		if c.br.Buffered() == 0 {
			// About to block: what the frames read so far made the
			// server say (acknowledgements, WINDOW_UPDATE, RST_STREAM)
			// leaves now, in one write.
			c.mu.Lock()
			if len(c.out) > 0 {
				c.kickLocked()
			}
			c.mu.Unlock()
		}
		f, err := c.fr.ReadFrame()
		if err == nil {
			err = c.handle(f)
		}
		if err != nil && !c.readError(err) {
			return
		}
	}
}

// readError handles a failed read or frame: a stream error resets the
// stream and reading goes on (true); anything else ends the connection.
func (c *conn) readError(err error) bool {
	var se http2.StreamError
	var ce *connError
	var fce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		c.countError("stream_" + strings.ToLower(se.Code.String()))
		c.mu.Lock()
		if se.StreamID%2 == 1 && se.StreamID > c.maxSeen && !c.closing {
			c.maxSeen = se.StreamID
		}
		if st := c.streams[se.StreamID]; st != nil {
			c.resetLocked(st, se.Code)
		} else {
			c.appendRSTLocked(se.StreamID, se.Code)
		}
		if ferr := c.floodLocked(); ferr != nil {
			c.mu.Unlock()
			return c.readError(ferr)
		}
		c.mu.Unlock()
		return true
	case errors.As(err, &ce):
		c.countError("conn_" + strings.ToLower(ce.code.String()))
		c.abort(ce)
	case errors.As(err, &fce):
		reason := "frame error"
		if d := c.fr.ErrorDetail(); d != nil {
			reason = d.Error()
		}
		ce := &connError{http2.ErrCode(fce), reason}
		c.countError("conn_" + strings.ToLower(ce.code.String()))
		c.abort(ce)
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.countError("conn_frame_size_error")
		c.abort(&connError{errCodeFrame, "frame larger than SETTINGS_MAX_FRAME_SIZE"})
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.abort(&connError{errCodeNo, "idle timeout"})
		}
		if l := c.srv.cfg.Log.V(1); l.Enabled() && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			l.Info("HTTP/2 connection read failed", "client", c.client, "err", err.Error())
		}
	}
	return false
}

func (c *conn) countError(reason string) { c.srv.cfg.CountError(reason) }

// abort sends a GOAWAY with e's code (the reader returns and closes the
// connection afterwards).
func (c *conn) abort(e *connError) {
	if e.code != errCodeNo {
		if l := c.srv.cfg.Log.V(1); l.Enabled() {
			l.Info("HTTP/2 connection error", "client", c.client, "code", e.code.String(), "reason", e.reason)
		}
	}
	c.mu.Lock()
	c.closing = true
	c.appendGoAwayLocked(c.maxSeen, e.code, e.reason)
	c.mu.Unlock()
}

// handle processes one frame on the reader goroutine; a non-nil error is
// a connection error (or a StreamError, which resets one stream).
func (c *conn) handle(f http2.Frame) error {
	if !c.sawSetting {
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			return protoErr("the client preface must start with SETTINGS")
		}
		c.sawSetting = true
		c.mu.Lock()
		c.setIdleLocked()
		c.mu.Unlock()
	}
	var err error
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		err = c.onHeaders(f)
	case *http2.DataFrame:
		err = c.onData(f)
	case *http2.SettingsFrame:
		err = c.onSettings(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.mu.Lock()
			c.appendPingAckLocked(f.Data)
			err = c.floodLocked()
			c.mu.Unlock()
		}
	case *http2.WindowUpdateFrame:
		err = c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		err = c.onReset(f)
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			return http2.StreamError{StreamID: f.StreamID, Code: errCodeProtocol}
		}
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.closing = true
		done := c.active == 0
		c.mu.Unlock()
		if done {
			return io.EOF
		}
	case *http2.PushPromiseFrame:
		return protoErr("PUSH_PROMISE from a client")
	default:
		// Unknown frame types are ignored (RFC 9113 §4.1).
	}
	return err
}

// floodLocked reports a client that makes the server queue more output
// (acknowledgements, resets) than it reads.
func (c *conn) floodLocked() error {
	if len(c.out) > maxQueuedControl {
		c.countError("control_flood")
		return &connError{errCodeCalm, "too much unread output"}
	}
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				return &connError{http2.ErrCode(ce), "invalid " + s.ID.String()}
			}
			return protoErr("invalid setting")
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.enc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitWin
			c.peerInitWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > maxWindow {
					return &connError{errCodeFlow, "stream window above 2^31-1"}
				}
			}
			c.space.Broadcast()
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.appendSettingsAckLocked()
	return c.floodLocked()
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWin += inc
		if c.sendWin > maxWindow {
			return &connError{errCodeFlow, "connection window above 2^31-1"}
		}
		c.space.Broadcast()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxSeen {
			return protoErr("WINDOW_UPDATE on an idle stream")
		}
		return nil // a closed stream
	}
	st.sendWin += inc
	if st.sendWin > maxWindow {
		c.resetLocked(st, errCodeFlow)
		return nil
	}
	c.space.Broadcast()
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxSeen {
			return protoErr("RST_STREAM on an idle stream")
		}
		return nil
	}
	st.clientReset = true
	if !st.finished {
		c.resets--
		if c.resets < 0 {
			c.countError("rapid_reset")
			return &connError{errCodeCalm, "too many streams reset"}
		}
	}
	c.endStreamLocked(st, errStreamReset)
	return nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	id, n := f.StreamID, int(f.Length)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.recvWin {
		return &connError{errCodeFlow, "DATA beyond the connection window"}
	}
	c.recvWin -= n
	st := c.streams[id]
	if st == nil {
		if id > c.maxSeen {
			return protoErr("DATA on an idle stream")
		}
		c.creditLocked(nil, n) // a closed stream: the bytes are dropped
		return nil
	}
	if st.remoteDone {
		c.creditLocked(nil, n)
		c.resetLocked(st, errCodeClosed)
		return nil
	}
	if n > st.recvWin {
		c.creditLocked(nil, n)
		c.resetLocked(st, errCodeFlow)
		return nil
	}
	st.recvWin -= n
	data := f.Data()
	if pad := n - len(data); pad > 0 {
		c.creditLocked(st, pad)
	}
	if len(data) == 0 && !f.StreamEnded() {
		c.emptyData++
		if c.emptyData > maxEmptyData {
			c.countError("empty_data_flood")
			return &connError{errCodeCalm, "too many empty DATA frames"}
		}
	}
	st.got += int64(len(data))
	if st.declLen >= 0 && st.got > st.declLen {
		c.creditLocked(nil, len(data))
		c.countError("stream_content_length")
		c.resetLocked(st, errCodeProtocol)
		return nil
	}
	if st.discard {
		c.creditLocked(nil, len(data))
	} else {
		st.buf = append(st.buf, data...)
	}
	if f.StreamEnded() {
		if st.declLen >= 0 && st.got != st.declLen {
			c.countError("stream_content_length")
			c.resetLocked(st, errCodeProtocol)
			return nil
		}
		c.remoteEndLocked(st)
	}
	st.signal()
	return nil
}

// remoteEndLocked records the client's END_STREAM.
func (c *conn) remoteEndLocked(st *stream) {
	st.remoteDone = true
	if st.bodyErr == nil {
		st.bodyErr = io.EOF
	}
	if st.localDone {
		delete(c.streams, st.id)
	}
}

// creditLocked returns n received bytes to the connection window and,
// when st still receives, to st's: a WINDOW_UPDATE leaves once half a
// window is owed.
func (c *conn) creditLocked(st *stream, n int) {
	if n <= 0 {
		return
	}
	cfg := &c.srv.cfg
	c.recvUnacked += n
	if c.recvUnacked >= cfg.ConnWindow/2 {
		c.appendWindowUpdateLocked(0, c.recvUnacked)
		c.recvWin += c.recvUnacked
		c.recvUnacked = 0
	}
	if st != nil && !st.remoteDone && !st.reset {
		st.recvUnacked += n
		if st.recvUnacked >= cfg.StreamWindow/2 {
			c.appendWindowUpdateLocked(st.id, st.recvUnacked)
			st.recvWin += st.recvUnacked
			st.recvUnacked = 0
		}
	}
}

// resetLocked sends RST_STREAM with code and ends st.
func (c *conn) resetLocked(st *stream, code http2.ErrCode) {
	if !st.reset && !(st.localDone && st.remoteDone) {
		c.appendRSTLocked(st.id, code)
	}
	c.endStreamLocked(st, errStreamReset)
}

// endStreamLocked ends st after a reset (either side's): its handler's
// reads and writes fail with err, its context is cancelled, its unread
// body bytes return to the connection window.
func (c *conn) endStreamLocked(st *stream, err error) {
	st.reset = true
	if st.bodyErr == nil {
		st.bodyErr = err
	}
	delete(c.streams, st.id)
	st.dropBodyLocked()
	if st.cancel != nil {
		st.cancel()
	}
	st.signal()
	c.space.Broadcast()
}

// setIdleLocked arms the idle timeout when no stream runs.
func (c *conn) setIdleLocked() {
	if c.active == 0 && !c.idleDL {
		c.idleDL = true
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout))
	}
}

// goAway starts a graceful close: GOAWAY with the last stream taken, then
// the connection closes once its streams are done.
func (c *conn) goAway(code http2.ErrCode, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed != nil {
		return
	}
	if !c.closing {
		c.closing = true
		c.appendGoAwayLocked(c.maxSeen, code, reason)
	}
	if c.active == 0 {
		c.closeWhenFlushedLocked()
		return
	}
	c.kickLocked()
}

// closeWhenFlushedLocked closes the connection once the pending output is
// written (by this goroutine, or by the write in flight).
func (c *conn) closeWhenFlushedLocked() {
	c.closeAfter = true
	if !c.flushing {
		c.flushLocked()
		_ = c.nc.Close()
	}
}

// failLocked marks the connection over: every stream ends with err.
func (c *conn) failLocked(err error) {
	if c.failed != nil {
		return
	}
	c.failed = err
	c.closing = true
	for _, st := range c.streams {
		c.endStreamLocked(st, err)
	}
	c.space.Broadcast()
}

// finish ends the connection after the reader stopped: the pending output
// (a GOAWAY) is written, the streams' handlers see their contexts
// cancelled, and it returns once they are done.
func (c *conn) finish() {
	c.mu.Lock()
	for c.flushing {
		c.space.Wait()
	}
	if len(c.out) > 0 && c.werr == nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(finalFlushTimeout))
		c.flushLocked()
	}
	c.failLocked(errConnClosed)
	c.mu.Unlock()
	c.cancel()
	_ = c.nc.Close()
	c.wg.Wait()
}
