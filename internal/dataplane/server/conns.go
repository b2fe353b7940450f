package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
)

// errUntrustedSource refuses connections from outside TrustedProxies when
// the PROXY protocol is on.
var errUntrustedSource = errors.New("server: PROXY header required but source is not a trusted proxy")

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
}

// Close closes the connection and releases its slot. It is safe to call
// more than once.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.srv.untrack(c) })
	return err
}

// CloseWrite half-closes the TCP connection (net/http's lingering close,
// half-close in passthrough proxying).
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("server: connection does not support CloseWrite")
}

// proxiedConn is a connection after its PROXY header: reads first replay
// the bytes the header parser had buffered past the header, then go
// straight to the tracked TCP connection; RemoteAddr and LocalAddr are the
// addresses the header carried (the socket's when it had none). It replaces
// go-proxyproto's Conn once the header is parsed, so that the connection's
// life (every TLS record read, every SetReadDeadline of net/http) pays no
// extra buffering layer or per-deadline allocation.
//
// Reads are not safe for concurrent use (TLS serialises them).
type proxiedConn struct {
	*trackedConn
	pending       []byte // buffered bytes past the header, replayed first
	local, remote net.Addr
}

// Read implements net.Conn.
func (c *proxiedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.trackedConn.Read(p)
}

// RemoteAddr is the client address the PROXY header carried.
func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the destination address the PROXY header carried.
func (c *proxiedConn) LocalAddr() net.Addr { return c.local }

// errBufferedTaken stops proxyproto.Conn.WriteTo once it has handed over
// its buffered bytes.
var errBufferedTaken = errors.New("server: buffered bytes taken")

// bufferedTaker is the io.Writer given to proxyproto.Conn.WriteTo: WriteTo
// writes the parser's buffered bytes first, in one Write, and then would
// copy the socket; failing that first Write takes exactly the buffered
// bytes and leaves the socket unread.
type bufferedTaker struct{ b []byte }

func (w *bufferedTaker) Write(p []byte) (int, error) {
	w.b = append([]byte(nil), p...)
	return 0, errBufferedTaken
}

// proxyPolicy decides how the PROXY header of a connection from src is
// treated (only called with ProxyProtocol on): required from trusted
// sources; a non-nil error refuses any other source.
func (s *Server) proxyPolicy(src net.Addr) (proxyproto.Policy, error) {
	if ta, ok := src.(*net.TCPAddr); ok {
		ip := ta.AddrPort().Addr().Unmap()
		for _, p := range s.cfg.TrustedProxies {
			if p.Contains(ip) {
				return proxyproto.REQUIRE, nil
			}
		}
	}
	return 0, errUntrustedSource
}

// readProxyHeader parses the PROXY header of c according to policy and
// returns a connection whose RemoteAddr is the carried client address.
func (s *Server) readProxyHeader(c *trackedConn, deadline time.Time) (net.Conn, error) {
	pol, err := s.proxyPolicy(c.RemoteAddr())
	if err != nil {
		return nil, fmt.Errorf("connection from %s: %w", c.RemoteAddr(), err)
	}
	timeout := time.Until(deadline)
	if timeout <= 0 {
		timeout = time.Millisecond
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(pol), proxyproto.SetReadHeaderTimeout(timeout))
	// A zero-length read forces the header to be parsed now; go-proxyproto
	// reports a policy violation only on the first Read.
	if _, err := pc.Read(nil); err != nil {
		return nil, fmt.Errorf("PROXY header from %s: %w", c.RemoteAddr(), err)
	}
	// Keep the header's addresses and the bytes read past the header, and
	// drop go-proxyproto's wrapper for the rest of the connection.
	remote, local := pc.RemoteAddr(), pc.LocalAddr()
	// Any other error than errBufferedTaken means nothing was buffered and
	// the parser kept a read error (a header timeout under an optional
	// policy, EOF): the socket reports it again on the next read.
	var bt bufferedTaker
	_, _ = pc.WriteTo(&bt)
	if len(bt.b) == 0 {
		bt.b = nil
	}
	return &proxiedConn{trackedConn: c, pending: bt.b, local: local, remote: remote}, nil
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
