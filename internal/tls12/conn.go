package tls12

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxHandshakeLen bounds one reassembled handshake message body.
const maxHandshakeLen = MaxClientHelloLen

// maxIdleRecords bounds consecutive records that carry no application
// data (empty fragments, warning alerts), so a peer cannot keep a reader
// spinning without progress.
const maxIdleRecords = 16

// ErrRenegotiation is returned by Read when the client asks to
// renegotiate. The server answers with a no_renegotiation alert and the
// connection ends (RFC 5746 allows refusing; this package never
// renegotiates).
var ErrRenegotiation = errors.New("tls12: client asked to renegotiate; refused")

// Conn is the server side of a TLS 1.2 connection. Read and Write may be
// called concurrently with each other; Close may be called from any
// goroutine. The handshake runs on the first Handshake, Read or Write.
type Conn struct {
	conn net.Conn
	cfg  *Config

	hsMu   sync.Mutex
	hsDone atomic.Bool
	hsErr  error
	state  tls.ConnectionState // written once, before hsDone is set

	in struct {
		sync.Mutex
		rr    recordReader
		hs    []byte // reassembly of handshake messages
		input []byte // decrypted application data not yet read
		idle  int
	}
	out struct {
		sync.Mutex
		cs  *cipherState // nil: plaintext
		buf []byte
		err error // sticky write error
	}
	closed atomic.Bool
	// peerReset is set once a read failed because the peer reset the
	// connection: Close then sends no close_notify, which could only fail
	// (EPIPE, and a SIGPIPE delivered to the process) on every such
	// connection.
	peerReset atomic.Bool
	// hello is the ClientHello the caller already parsed, if any.
	hello *ClientHello
}

// Server returns the server side of a TLS 1.2 connection over c, using
// cfg. The Conn owns c from now on.
func Server(c net.Conn, cfg *Config) *Conn {
	tc := &Conn{conn: c, cfg: cfg}
	tc.in.rr.r = c
	return tc
}

// ServerWithHello is Server for a connection whose ClientHello the caller
// has parsed already (to route it): the handshake still reads the hello
// from c, and uses h instead of parsing it again when the bytes are the
// same.
func ServerWithHello(c net.Conn, cfg *Config, h *ClientHello) *Conn {
	tc := Server(c, cfg)
	tc.hello = h
	return tc
}

// Handshake runs the handshake if it has not run yet and returns its
// result. A failed handshake has sent the peer a fatal alert.
func (c *Conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext is Handshake; when ctx ends first, the connection is
// closed and ctx's error returned.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if c.hsDone.Load() {
		return nil
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone.Load() || c.hsErr != nil {
		return c.hsErr
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { _ = c.conn.Close() })
		defer stop()
	}
	c.in.Lock()
	c.out.Lock()
	err := c.serverHandshake()
	c.out.buf = nil // the flights are sent; application writes size their own
	c.in.rr.release()
	c.out.Unlock()
	c.in.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("tls12: handshake: %w", ctx.Err())
		}
		c.hsErr = err
		return err
	}
	c.hsDone.Store(true)
	return nil
}

// ConnectionState returns what the handshake negotiated. Before the
// handshake completes, HandshakeComplete is false and the rest is zero.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if !c.hsDone.Load() {
		return tls.ConnectionState{}
	}
	return c.state
}

// Read reads application data. It returns io.EOF after the peer's
// close_notify, and ErrRenegotiation (after answering no_renegotiation)
// when the peer tries to renegotiate.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.in.Lock()
	defer c.in.Unlock()
	for len(c.in.input) == 0 {
		if err := c.readAppRecord(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.in.input)
	c.in.input = c.in.input[n:]
	if len(c.in.input) == 0 {
		c.in.rr.release()
	}
	return n, nil
}

// readAppRecord reads one record after the handshake. Called with in held.
func (c *Conn) readAppRecord() error {
	typ, frag, err := c.in.rr.next()
	if err != nil {
		return c.fail(err)
	}
	switch typ {
	case recordApplicationData:
		if len(frag) > 0 {
			c.in.input, c.in.idle = frag, 0
			return nil
		}
	case recordAlert:
		if err := c.handleAlert(frag); err != nil {
			return err
		}
	case recordHandshake:
		c.in.hs = append(c.in.hs, frag...)
		if len(c.in.hs) > 0 && c.in.hs[0] == typeClientHello {
			c.sendAlertLocked(alertLevelWarning, alertNoRenegotiation)
			c.in.rr.err = ErrRenegotiation
			return ErrRenegotiation
		}
		return c.fail(&alertError{desc: alertUnexpectedMessage, err: errors.New("handshake message after the handshake")})
	default:
		return c.fail(&alertError{desc: alertUnexpectedMessage, err: fmt.Errorf("record type %d after the handshake", typ)})
	}
	if c.in.idle++; c.in.idle > maxIdleRecords {
		return c.fail(&alertError{desc: alertUnexpectedMessage, err: errors.New("too many records without data")})
	}
	return nil
}

// handleAlert processes a received alert: close_notify becomes io.EOF,
// other warnings are ignored, fatal alerts end the connection.
func (c *Conn) handleAlert(frag []byte) error {
	if len(frag) != 2 {
		return c.fail(&alertError{desc: alertDecodeError, err: errors.New("alert record length")})
	}
	if frag[1] == alertCloseNotify {
		c.in.rr.err = io.EOF
		return io.EOF
	}
	if frag[0] == alertLevelWarning {
		return nil
	}
	err := &alertError{desc: frag[1], received: true}
	c.in.rr.err = err
	return err
}

// fail sends the alert an *alertError calls for (other errors are I/O
// errors, reported as they are) and makes err sticky for reads.
func (c *Conn) fail(err error) error {
	var ae *alertError
	if errors.As(err, &ae) && !ae.received {
		c.sendAlert(alertLevelFatal, ae.desc)
	}
	if errors.Is(err, syscall.ECONNRESET) {
		c.peerReset.Store(true)
	}
	c.in.rr.err = err
	return err
}

// sendAlert sends an alert unless a write is failing; it takes out.
func (c *Conn) sendAlert(level, desc uint8) {
	if c.hsDone.Load() {
		c.out.Lock()
		defer c.out.Unlock()
	}
	c.sendAlertLocked(level, desc)
}

func (c *Conn) sendAlertLocked(level, desc uint8) {
	if c.out.err != nil {
		return
	}
	c.out.buf = appendRecords(c.out.buf[:0], c.out.cs, recordAlert, []byte{level, desc})
	_, err := c.conn.Write(c.out.buf)
	c.out.buf = c.out.buf[:0]
	if level == alertLevelFatal || desc == alertCloseNotify {
		c.out.err = net.ErrClosed
	}
	if err != nil {
		c.out.err = err
	}
}

// maxFlush bounds the bytes sealed before they are written out.
const maxFlush = 4 * maxPlaintext

// Write writes application data as records of at most 16 KiB.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return 0, c.out.err
	}
	n := 0
	for n < len(p) {
		chunk := p[n:min(len(p), n+maxFlush)]
		c.out.buf = appendRecords(c.out.buf[:0], c.out.cs, recordApplicationData, chunk)
		if _, err := c.conn.Write(c.out.buf); err != nil {
			c.out.err = err
			return n, err
		}
		n += len(chunk)
	}
	c.trimOut()
	return n, nil
}

// trimOut drops a large write buffer so idle connections stay small.
func (c *Conn) trimOut() {
	if cap(c.out.buf) > 2*maxPlaintext {
		c.out.buf = nil
	}
}

// CloseWrite sends close_notify; the connection stays open for reading.
func (c *Conn) CloseWrite() error {
	if !c.hsDone.Load() {
		return errors.New("tls12: CloseWrite before the handshake completed")
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return c.out.err
	}
	c.sendAlertLocked(alertLevelWarning, alertCloseNotify)
	if c.out.err == net.ErrClosed {
		return nil
	}
	return c.out.err
}

// closeNotifyTimeout bounds the close_notify write in Close.
const closeNotifyTimeout = time.Second

// Close sends close_notify (when the handshake is done, no Write is in
// progress and the peer has not reset the connection) and closes the
// underlying connection.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	if c.hsDone.Load() && !c.peerReset.Load() && c.out.TryLock() {
		if c.out.err == nil {
			_ = c.conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
			c.sendAlertLocked(alertLevelWarning, alertCloseNotify)
		}
		c.out.Unlock()
	}
	return c.conn.Close()
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.conn }

// LocalAddr, RemoteAddr and the deadlines are those of the underlying
// connection.
func (c *Conn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
