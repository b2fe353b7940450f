package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/proxyproto"
)

// trackedConn is every accepted connection as the server sees it: it counts
// towards MaxConns and the open-connections gauge until closed, whoever owns
// it by then (the HTTP servers, an upgraded tunnel, or the PreTLS hook).
type trackedConn struct {
	net.Conn
	srv      *Server
	listener string
	// frontend is the Gateway frontend whose listener accepted the
	// connection, nil for the replica's own listeners.
	frontend *frontend
	once     sync.Once
	// handedOff is set once the connection left the server's preparation
	// (PROXY header, PreTLS, TLS handshake); Shutdown closes the others at
	// once, as they are not in-flight requests yet.
	handedOff atomic.Bool

	// holding is set by HoldUntilClose: writes go to held (under holdMu)
	// until the connection closes or half-closes.
	holding atomic.Bool
	holdMu  sync.Mutex
	held    *[]byte // pooled; nil until the first held write
}

// holdMax bounds the output a connection holds until it closes: a
// response's last flush and a TLS close_notify fit many times over. A write
// that would hold more sends what is held and itself at once.
const holdMax = 16 << 10

// holdFlushTimeout bounds the write of the held output at close, as
// crypto/tls bounds its close_notify (which it then makes the last write:
// it sets the deadline to now once the alert is out).
const holdFlushTimeout = 5 * time.Second

// heldBufs pools the buffers of held output.
var heldBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// HoldUntilClose makes the connection keep what is written from now on and
// send it in one write when it is closed or half-closed: the last response
// on a connection that closes after it and the TLS close_notify alert that
// follows then cost one system call (and one segment to the client)
// instead of two. Writes that are held report success; an error of the
// deferred write is returned by Close (or CloseWrite). Output beyond
// holdMax is written through. Only for a connection whose close is decided:
// nothing held is sent before it.
func (c *trackedConn) HoldUntilClose() { c.holding.Store(true) }

// Write implements net.Conn.
func (c *trackedConn) Write(p []byte) (int, error) {
	if !c.holding.Load() {
		return c.Conn.Write(p)
	}
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	if !c.holding.Load() { // released meanwhile
		return c.Conn.Write(p)
	}
	if c.held == nil {
		c.held = heldBufs.Get().(*[]byte)
	}
	if len(*c.held)+len(p) <= holdMax {
		*c.held = append(*c.held, p...)
		return len(p), nil
	}
	if err := c.releaseLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// release stops holding and writes what was held, if anything.
func (c *trackedConn) release() error {
	if !c.holding.Load() {
		return nil
	}
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	return c.releaseLocked()
}

func (c *trackedConn) releaseLocked() error {
	c.holding.Store(false)
	if c.held == nil {
		return nil
	}
	b := c.held
	c.held = nil
	var err error
	if len(*b) > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(holdFlushTimeout))
		_, err = c.Conn.Write(*b)
	}
	*b = (*b)[:0]
	heldBufs.Put(b)
	return err
}

// Close sends what is held, closes the connection and releases its slot.
// It is safe to call more than once.
func (c *trackedConn) Close() error {
	werr := c.release()
	err := c.Conn.Close()
	c.once.Do(func() { c.srv.untrack(c) })
	if err == nil && werr != nil {
		err = fmt.Errorf("server: held output: %w", werr)
	}
	return err
}

// CloseWrite sends what is held and half-closes the TCP connection
// (lingering close, half-close in passthrough proxying).
func (c *trackedConn) CloseWrite() error {
	if err := c.release(); err != nil {
		return fmt.Errorf("server: held output: %w", err)
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("server: connection does not support CloseWrite")
}

// proxiedConn is a connection after its PROXY header: reads first replay
// the bytes read past the header (the start of the ClientHello or request,
// which arrive with the header in one read), then go straight to the
// tracked TCP connection; RemoteAddr and LocalAddr are the addresses the
// header carried (the socket's when it had none).
//
// Reads are not safe for concurrent use (TLS serialises them).
type proxiedConn struct {
	*trackedConn
	pending []byte // bytes past the header, replayed first; in buf
	// buf is the pooled buffer the header was read into, returned once
	// pending is replayed (nil after that).
	buf           *[headerBuf]byte
	local, remote net.Addr
}

// Read implements net.Conn.
func (c *proxiedConn) Read(p []byte) (int, error) {
	if c.buf != nil {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			headerBufs.Put(c.buf)
			c.buf, c.pending = nil, nil
		}
		return n, nil
	}
	return c.trackedConn.Read(p)
}

// RemoteAddr is the client address the PROXY header carried.
func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the destination address the PROXY header carried.
func (c *proxiedConn) LocalAddr() net.Addr { return c.local }

// headerBuf is the size of the buffer a PROXY header is read into: room
// for the header and, in the same read, a ClientHello with a post-quantum
// key share (about 1.5 KB) or a request head. A v2 header (TLVs included)
// longer than this is refused.
const headerBuf = 4096

// headerBufs pools the PROXY header buffers: one per connection while its
// header and the bytes after it are read and replayed.
var headerBufs = sync.Pool{New: func() any { return new([headerBuf]byte) }}

// errUntrustedSource refuses connections from outside TrustedProxies when
// the PROXY protocol is on.
var errUntrustedSource = errors.New("server: PROXY header required but source is not a trusted proxy")

// proxyTrusted reports whether src may send a PROXY header (only called
// with ProxyProtocol on): a header is required from trusted sources, and
// every other source is refused.
func (s *Server) proxyTrusted(src net.Addr) bool {
	if ta, ok := src.(*net.TCPAddr); ok {
		ip := ta.AddrPort().Addr().Unmap()
		for _, p := range s.cfg.TrustedProxies {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// readProxyHeader reads and parses the PROXY header of c (required), within
// deadline, and returns a connection whose RemoteAddr and LocalAddr are the
// carried addresses. The header usually arrives with what follows it in
// one read; those bytes are replayed by the returned connection. The read
// deadline is left set: the next stage sets its own.
func (s *Server) readProxyHeader(c *trackedConn, deadline time.Time) (net.Conn, error) {
	if !s.proxyTrusted(c.RemoteAddr()) {
		return nil, fmt.Errorf("connection from %s: %w", c.RemoteAddr(), errUntrustedSource)
	}
	_ = c.SetReadDeadline(deadline)
	buf := headerBufs.Get().(*[headerBuf]byte)
	h, n, filled, err := readHeader(c, buf[:])
	if err != nil {
		headerBufs.Put(buf)
		return nil, fmt.Errorf("PROXY header from %s: %w", c.RemoteAddr(), err)
	}
	pc := &proxiedConn{trackedConn: c, local: c.LocalAddr(), remote: c.RemoteAddr()}
	if !h.Local {
		pc.remote = net.TCPAddrFromAddrPort(h.Source)
		pc.local = net.TCPAddrFromAddrPort(h.Destination)
	}
	if n < filled {
		pc.buf, pc.pending = buf, buf[n:filled]
	} else {
		headerBufs.Put(buf)
	}
	return pc, nil
}

// readHeader reads from r into buf until buf starts with a whole PROXY
// header, and returns it, its length and how many bytes of buf were read.
func readHeader(r io.Reader, buf []byte) (h proxyproto.Header, n, filled int, err error) {
	for {
		m, rerr := r.Read(buf[filled:])
		filled += m
		h, n, err = proxyproto.Parse(buf[:filled])
		switch {
		case err == nil:
			return h, n, filled, nil
		case !errors.Is(err, proxyproto.ErrIncomplete):
			return h, 0, 0, err
		case rerr != nil:
			return h, 0, 0, fmt.Errorf("%w: %w", proxyproto.ErrIncomplete, rerr)
		case filled == len(buf):
			return h, 0, 0, fmt.Errorf("%w: longer than %d bytes", proxyproto.ErrMalformed, len(buf))
		}
	}
}

// trustedPrefixesValid reports a configuration error in TrustedProxies.
func trustedPrefixesValid(ps []netip.Prefix) error {
	for _, p := range ps {
		if !p.IsValid() {
			return fmt.Errorf("server: invalid trusted proxy prefix %v", p)
		}
	}
	return nil
}
