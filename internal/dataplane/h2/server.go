package h2

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// Defaults of Config.
const (
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultIdleTimeout          = 120 * time.Second
	DefaultMaxHeaderBytes       = 64 << 10
	DefaultMaxConcurrentStreams = 128
	// DefaultStreamWindow and DefaultConnWindow are the receive windows
	// offered for request bodies: what a stream, and all streams of a
	// connection together, may have buffered in meshgate before the
	// handler reads it.
	DefaultStreamWindow = 256 << 10
	DefaultConnWindow   = 1 << 20
)

// Config configures a Server. Zero values mean the defaults; Handler is
// required.
type Config struct {
	// Handler serves every stream.
	Handler exchange.Handler
	// ReadHeaderTimeout bounds the client preface and its first SETTINGS.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a connection without open streams this long.
	IdleTimeout time.Duration
	// WriteTimeout, if set, bounds each write to the connection.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request's header list (RFC 9113 §6.5.2
	// SETTINGS_MAX_HEADER_LIST_SIZE: names, values and 32 bytes per
	// field); a larger one is answered 431.
	MaxHeaderBytes int
	// MaxConcurrentStreams bounds the streams of a connection whose
	// handler runs.
	MaxConcurrentStreams int
	// StreamWindow and ConnWindow are the receive windows (see the
	// defaults).
	StreamWindow, ConnWindow int
	// CountError, if set, is called with a short reason each time a
	// connection or a stream is refused for a protocol error or a flood
	// (e.g. "conn_protocol", "stream_protocol", "rapid_reset"). It must
	// be safe for concurrent use.
	CountError func(reason string)
	// Log receives connection errors at V(1).
	Log logr.Logger
}

// ConnInfo describes a connection handed to ServeConn.
type ConnInfo struct {
	// RemoteAddr is the client address (the PROXY header's, when there
	// was one).
	RemoteAddr netip.AddrPort
	// TLS reports a TLS connection: requests get the "https" scheme.
	TLS bool
	// ServerName is the TLS connection's SNI, copied into every request
	// (exchange.Request.ServerName: the pipeline answers 421 to requests
	// for a host under another TLS policy, so it must be set).
	ServerName string
	// Frontend is the Gateway frontend address and port the connection
	// came on, copied into every request (exchange.Request.Frontend); zero
	// for the replica's own listeners.
	Frontend netip.AddrPort
}

// Server serves HTTP/2 connections. Its methods are safe for concurrent
// use.
type Server struct {
	cfg     Config
	workers workers
	date    dateCache

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool
}

// NewServer validates cfg and returns a Server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("h2: Config.Handler is required")
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
	if cfg.MaxConcurrentStreams <= 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.StreamWindow <= 0 {
		cfg.StreamWindow = DefaultStreamWindow
	}
	if cfg.ConnWindow <= 0 {
		cfg.ConnWindow = DefaultConnWindow
	}
	const maxWindow = 1<<31 - 1
	if cfg.StreamWindow > maxWindow || cfg.ConnWindow > maxWindow {
		return nil, errors.New("h2: windows are at most 2^31-1 bytes")
	}
	if cfg.CountError == nil {
		cfg.CountError = func(string) {}
	}
	return &Server{cfg: cfg, conns: make(map[*conn]struct{})}, nil
}

// ServeConn serves HTTP/2 on c, whose client preface has not been read
// yet, until the connection ends, then closes c. It returns once every
// stream's handler has returned.
func (s *Server) ServeConn(c net.Conn, info ConnInfo) {
	cc := newConn(s, c, info)
	if !s.track(cc) {
		_ = c.Close()
		return
	}
	defer s.untrack(cc)
	cc.serve()
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// drain marks the server draining (ServeConn closes what it is handed
// from now on) and returns the connections it serves.
func (s *Server) drain() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// Shutdown starts a graceful drain: every connection gets a GOAWAY, takes
// no new stream, and closes once its streams are done (an idle one at
// once); connections handed to ServeConn afterwards are closed. It does
// not wait.
func (s *Server) Shutdown() {
	conns := s.drain()
	for _, c := range conns {
		c.goAway(errCodeNo, "server shutting down")
	}
	s.workers.stopIdle()
}

// Close closes every connection at once; their handlers see their
// requests' contexts cancelled.
func (s *Server) Close() {
	conns := s.drain()
	for _, c := range conns {
		_ = c.nc.Close()
	}
	s.workers.stopIdle()
}

// workers is a pool of goroutines that run streams. A finished worker
// parks until the next stream (up to maxIdleWorkers of them) so that its
// stack, grown by the handler, is reused instead of a new goroutine
// growing one again.
type workers struct {
	mu   sync.Mutex
	idle []*worker
}

type worker struct{ next chan *stream }

// maxIdleWorkers bounds the parked workers of a Server (a parked worker
// holds its stack, a few KiB).
const maxIdleWorkers = 512

// run serves st on an idle worker, or on a new one.
func (p *workers) run(st *stream) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.next <- st
		return
	}
	p.mu.Unlock()
	go p.loop(&worker{next: make(chan *stream, 1)}, st)
}

func (p *workers) loop(w *worker, st *stream) {
	for st != nil {
		st.serve()
		p.mu.Lock()
		if len(p.idle) >= maxIdleWorkers {
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		st = <-w.next
	}
}

// stopIdle ends the parked workers.
func (p *workers) stopIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, w := range idle {
		w.next <- nil
	}
}
