package http1

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// Defaults of ServerConfig.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// ServerConfig configures a Server. Zero values mean the defaults; Handler
// is required.
type ServerConfig struct {
	// Handler serves every request.
	Handler exchange.Handler
	// ReadHeaderTimeout bounds reading a request head, from its first
	// byte (from the start of the connection for the first request).
	// A client that stalls gets 408 and the connection closes.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that stays idle this long
	// between requests.
	IdleTimeout time.Duration
	// WriteTimeout, if set, bounds writing each response head and body.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request head, request line included; a
	// longer one is answered 431.
	MaxHeaderBytes int
	// Log receives refused requests and connection errors at V(1).
	Log logr.Logger
}

// Server serves HTTP/1.1 (and 1.0) connections, one goroutine each: the
// caller's. ServeConn reads a request, hands it to the handler, writes the
// response and loops, with no other goroutine involved (a protocol upgrade
// adds one for the second direction) and no buffer held while the
// connection waits for its next request. Its methods are safe for
// concurrent use.
type Server struct {
	cfg      ServerConfig
	draining atomic.Bool
	date     dateCache

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// ConnInfo describes a connection given to ServeConn.
type ConnInfo struct {
	// TLS reports a connection over TLS (requests get scheme "https").
	TLS bool
	// ServerName is the TLS connection's SNI (exchange.Request.ServerName).
	ServerName string
	// RemoteAddr is the client address, after PROXY protocol; the zero
	// value takes the connection's RemoteAddr.
	RemoteAddr netip.AddrPort
	// Frontend is the Gateway frontend address and port the connection
	// came on (exchange.Request.Frontend); zero for the replica's own
	// listeners.
	Frontend netip.AddrPort
	// Hold, when set, is the transport connection under TLS. Before the
	// last response of a connection that closes after it goes out, the
	// server calls its HoldUntilClose: the response and the TLS
	// close_notify alert that follows are then sent in one write when the
	// connection closes.
	Hold Holder
}

// Holder is a transport connection that can keep its output until it is
// closed (see ConnInfo.Hold).
type Holder interface {
	HoldUntilClose()
}

// NewServer returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("http1: ServerConfig.Handler is required")
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return &Server{cfg: cfg, conns: make(map[*conn]struct{})}, nil
}

var connPool sync.Pool // *conn

// ServeConn serves nc until the client closes it, it idles out, a request
// asks to close, or Shutdown; it then closes nc. It blocks for the life of
// the connection.
func (s *Server) ServeConn(nc net.Conn, info ConnInfo) {
	c, _ := connPool.Get().(*conn)
	if c == nil {
		c = new(conn)
	}
	c.init(s, nc, info)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.serve()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.release()
	connPool.Put(c)
}

// Serve accepts connections from ln and serves each on its own goroutine
// until ln is closed (a convenience for tests and plain listeners; the
// data plane's server accepts and hands connections to ServeConn itself).
func (s *Server) Serve(ln net.Listener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		_, isTLS := nc.(*tls.Conn)
		go s.ServeConn(nc, ConnInfo{TLS: isTLS})
	}
}

// Shutdown starts a graceful drain: idle keep-alive connections are
// closed at once; a connection serving a request finishes it, answers with
// "Connection: close" and closes. It does not wait: callers track their
// connections (ServeConn returns).
func (s *Server) Shutdown() {
	s.draining.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.closeIfIdle()
	}
}

// Close closes every connection now.
func (s *Server) Close() {
	s.draining.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.nc.Close()
	}
}

// dateCache formats the Date field once per second.
type dateCache struct{ p atomic.Pointer[dateValue] }

type dateValue struct {
	sec int64
	n   int
	b   [40]byte
}

func (d *dateCache) get(now time.Time) []byte {
	sec := now.Unix()
	if v := d.p.Load(); v != nil && v.sec == sec {
		return v.b[:v.n]
	}
	v := &dateValue{sec: sec}
	v.n = len(now.UTC().AppendFormat(v.b[:0], http.TimeFormat))
	d.p.Store(v)
	return v.b[:v.n]
}
