package h2

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// stream is one request/response exchange. It is the request's Body and
// the handler's ResponseWriter. Fields under "c.mu" are shared with the
// reader; the others belong to the worker running the handler.
type stream struct {
	c      *conn
	id     uint32
	req    exchange.Request
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // cap 1: data, END_STREAM or reset arrived

	// c.mu
	remoteDone  bool  // END_STREAM received
	localDone   bool  // END_STREAM sent
	reset       bool  // RST_STREAM sent or received, or the connection ended
	clientReset bool  // the client reset it
	finished    bool  // the response is complete
	discard     bool  // the handler is done: drop body bytes
	declLen     int64 // content-length, -1 when absent
	got         int64 // body bytes received
	buf         []byte
	off         int
	bodyErr     error // after buf: io.EOF or why the body ended
	trailer     exchange.Header
	sendWin     int64
	recvWin     int
	recvUnacked int

	// worker
	readTimeout time.Duration
	timer       *time.Timer
	sent100     bool
	wroteFinal  bool
	headPending bool // the final head waits in hdr for the first body bytes
	bodyless    bool
	status      int
	cl          int64
	written     int64
	hdr         exchange.Header
}

var streamPool sync.Pool // *stream

// maxKeptBody is the largest body buffer a pooled stream keeps.
const maxKeptBody = 64 << 10

func getStream(c *conn, id uint32) *stream {
	st, _ := streamPool.Get().(*stream)
	if st == nil {
		st = &stream{wake: make(chan struct{}, 1)}
	}
	st.c, st.id, st.declLen = c, id, -1
	st.sendWin = c.peerInitWin
	st.recvWin = c.srv.cfg.StreamWindow
	return st
}

func putStream(st *stream) {
	h, hdr, tr := st.req.Header, st.hdr, st.trailer
	h.Reset()
	hdr.Reset()
	tr.Reset()
	buf := st.buf[:0]
	if cap(buf) > maxKeptBody {
		buf = nil
	}
	select {
	case <-st.wake:
	default:
	}
	*st = stream{wake: st.wake, timer: st.timer, buf: buf, hdr: hdr, trailer: tr,
		req: exchange.Request{Header: h}}
	streamPool.Put(st)
}

// signal wakes the worker waiting for body bytes.
func (st *stream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// dropBodyLocked discards unread body bytes, returning them to the
// connection window, and drops later ones.
func (st *stream) dropBodyLocked() {
	st.discard = true
	if n := len(st.buf) - st.off; n > 0 {
		st.c.creditLocked(nil, n)
	}
	st.buf, st.off = st.buf[:0], 0
}

// serve runs the handler on a worker goroutine, then ends the stream: a
// response left unfinished is reset (INTERNAL_ERROR), a request body still
// coming after a complete response is cut short (RST_STREAM NO_ERROR, RFC
// 9113 §8.1).
func (st *stream) serve() {
	c := st.c
	defer func() {
		if p := recover(); p != nil {
			c.srv.cfg.Log.Error(fmt.Errorf("panic: %v", p), "HTTP/2 handler panicked", "stream", st.id)
		}
		st.done()
	}()
	c.srv.cfg.Handler.ServeExchange(st, &st.req)
}

func (st *stream) done() {
	c := st.c
	c.mu.Lock()
	switch {
	case !st.finished:
		c.resetLocked(st, errCodeInternal)
	case !st.remoteDone && !st.reset:
		c.resetLocked(st, errCodeNo)
	}
	st.dropBodyLocked()
	delete(c.streams, st.id)
	c.active--
	if !st.clientReset && c.resets < resetBudget {
		c.resets++
	}
	if c.active == 0 {
		if c.closing {
			c.closeWhenFlushedLocked()
		} else {
			c.setIdleLocked()
		}
	}
	c.kickLocked()
	c.mu.Unlock()
	if st.timer != nil {
		st.timer.Stop()
	}
	st.cancel()
	c.wg.Done()
	putStream(st)
}

// Body.

// Read implements exchange.Body. A request that announced
// "Expect: 100-continue" gets its 100 (Continue) on the first read, unless
// the handler sent one.
func (st *stream) Read(p []byte) (int, error) {
	c := st.c
	c.mu.Lock()
	if st.req.ExpectContinue && !st.sent100 && !st.wroteFinal && c.failed == nil && !st.reset {
		st.sent100 = true
		c.appendHeadersLocked(st.id, 100, nil, -1, false, false)
		c.kickLocked()
	}
	for {
		if st.off < len(st.buf) {
			n := copy(p, st.buf[st.off:])
			st.off += n
			if st.off == len(st.buf) {
				st.buf, st.off = st.buf[:0], 0
			}
			c.creditLocked(st, n)
			c.kickLocked()
			c.mu.Unlock()
			return n, nil
		}
		if err := st.bodyErr; err != nil {
			c.mu.Unlock()
			return 0, err
		}
		c.mu.Unlock()
		if err := st.waitBody(); err != nil {
			return 0, err
		}
		c.mu.Lock()
	}
}

func (st *stream) waitBody() error {
	d := st.readTimeout
	if d <= 0 {
		<-st.wake
		return nil
	}
	if st.timer == nil {
		st.timer = time.NewTimer(d)
	} else {
		st.timer.Reset(d)
	}
	select {
	case <-st.wake:
		st.timer.Stop()
		return nil
	case <-st.timer.C:
		return exchange.ErrBodyTimeout
	}
}

// SetReadTimeout implements exchange.Body.
func (st *stream) SetReadTimeout(d time.Duration) { st.readTimeout = d }

// Trailer implements exchange.Body.
func (st *stream) Trailer() *exchange.Header {
	if st.trailer.Len() == 0 {
		return nil
	}
	return &st.trailer
}

// ResponseWriter.

var (
	errHeadTwice = errors.New("h2: response head written twice")
	errNoHead    = errors.New("h2: response body before its head")
	errStatus    = errors.New("h2: invalid response status")
	errTooLong   = errors.New("h2: response body longer than its content-length")
	errTooShort  = errors.New("h2: response body shorter than its content-length")
	errFinished  = errors.New("h2: response already finished")
)

// WriteHeader implements exchange.ResponseWriter. Interim heads leave at
// once; the final head waits for the first body bytes, Flush or Finish so
// that it shares their write (and, without a body, carries END_STREAM).
func (st *stream) WriteHeader(status int, h *exchange.Header, contentLength int64) error {
	if st.wroteFinal {
		return errHeadTwice
	}
	if status < 100 || status > 999 || status == 101 {
		return errStatus
	}
	c := st.c
	if status < 200 {
		if status == 100 {
			if st.sent100 {
				return nil
			}
			st.sent100 = true
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if err := st.writableLocked(); err != nil {
			return err
		}
		c.appendHeadersLocked(st.id, status, h, -1, false, false)
		c.kickLocked()
		return nil
	}
	st.wroteFinal, st.headPending, st.status = true, true, status
	st.bodyless = st.req.Method == "HEAD" || status == 204 || status == 304
	st.cl = contentLength
	if status == 204 {
		st.cl = -1
	}
	st.hdr.CopyFrom(h)
	return nil
}

func (st *stream) writableLocked() error {
	c := st.c
	switch {
	case c.failed != nil:
		return c.failed
	case st.reset:
		return errStreamReset
	case st.localDone:
		return errFinished
	}
	return nil
}

// emitHeadLocked appends the pending final head.
func (st *stream) emitHeadLocked(end bool) {
	st.headPending = false
	st.c.appendHeadersLocked(st.id, st.status, &st.hdr, st.cl, true, end)
	st.hdr.Reset()
}

// Write implements exchange.ResponseWriter: DATA frames within the flow
// control windows, waiting for WINDOW_UPDATE when they are spent.
func (st *stream) Write(p []byte) (int, error) {
	if !st.wroteFinal {
		return 0, errNoHead
	}
	if st.bodyless {
		return len(p), nil
	}
	if st.cl >= 0 && st.written+int64(len(p)) > st.cl {
		return 0, errTooLong
	}
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := st.writableLocked(); err != nil {
		return 0, err
	}
	if st.headPending {
		st.emitHeadLocked(false)
	}
	n := 0
	for len(p) > 0 {
		if err := st.writableLocked(); err != nil {
			return n, err
		}
		if len(c.out) >= outHighWater {
			if c.flushing {
				c.space.Wait()
			} else {
				c.flushLocked()
			}
			continue
		}
		w := min(int64(len(p)), st.sendWin, c.sendWin, int64(c.peerMaxFrame))
		if w <= 0 {
			if !c.flushing && len(c.out) > 0 {
				c.flushLocked() // what is pending earns the window back
			} else {
				c.space.Wait()
			}
			continue
		}
		c.appendDataLocked(st.id, p[:w], false)
		st.sendWin -= w
		c.sendWin -= w
		st.written += w
		p = p[w:]
		n += int(w)
	}
	return n, nil
}

// Flush implements exchange.ResponseWriter.
func (st *stream) Flush() error {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := st.writableLocked(); err != nil {
		return err
	}
	if st.headPending {
		st.emitHeadLocked(false)
	}
	c.kickLocked()
	return c.werr
}

// Finish implements exchange.ResponseWriter: END_STREAM on the last frame
// (the head, an empty DATA frame or the trailers).
func (st *stream) Finish(trailer *exchange.Header) error {
	if !st.wroteFinal {
		return errNoHead
	}
	if st.cl >= 0 && !st.bodyless && st.written != st.cl {
		return errTooShort
	}
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := st.writableLocked(); err != nil {
		return err
	}
	withTrailer := trailer != nil && trailer.Len() > 0
	switch {
	case st.headPending:
		st.emitHeadLocked(!withTrailer)
	case !withTrailer:
		c.appendDataLocked(st.id, nil, true)
	}
	if withTrailer {
		c.appendHeadersLocked(st.id, 0, trailer, -1, false, true)
	}
	st.localDone, st.finished = true, true
	if st.remoteDone {
		delete(c.streams, st.id)
	}
	c.kickAfterYieldLocked()
	return nil
}
