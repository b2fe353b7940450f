// Package server runs meshgate's client-facing TCP listeners: the TLS
// listener (SNI certificate selection per routing table, ALPN h2 and
// http/1.1, session resumption installed by a SessionConfigurer) and the
// plain HTTP listener, both optionally behind PROXY protocol.
//
// Each accepted connection is served on one goroutine from start to end:
// the preamble (PROXY header, PreTLS hook, TLS handshake, all bounded by
// ReadHeaderTimeout, so a slow client never blocks the accept loop), then
// HTTP/1.1 on meshgate's own engine (internal/dataplane/http1) or, when
// ALPN chose h2, HTTP/2 on x/net/http2's ServeConn — with no hand-off to
// another goroutine in between.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http2"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/http1"
	"github.com/meshgate/meshgate/internal/dataplane/proxy"
	"github.com/meshgate/meshgate/internal/tls12"
)

// Handler serves the requests of both listeners: HTTP/1.1 as exchanges,
// HTTP/2 through net/http. proxy.Handler is one.
type Handler interface {
	exchange.Handler
	http.Handler
}

// Server owns the HTTPS and HTTP listeners. Its methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	m       *metrics
	tlsc    *tlsConfigs
	base    *tls.Config
	handler Handler
	proxyPP bool // PROXY protocol parsing enabled
	h1      *http1.Server
	h2      *http2.Server
	h2base  *http.Server // settings and graceful shutdown of h2 connections

	ctx    context.Context // cancelled when Shutdown begins
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	started   bool
	stopping  bool
	listeners []net.Listener
	addrs     map[string]net.Addr
	conns     map[*trackedConn]struct{}
}

// New validates cfg and builds a Server; it does not bind anything.
func New(cfg Config) (*Server, error) {
	if cfg.Table == nil {
		return nil, errors.New("server: Config.Table is required")
	}
	if cfg.Sessions == nil {
		return nil, errors.New("server: Config.Sessions is required")
	}
	if err := trustedPrefixesValid(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		m:       m,
		tlsc:    &tlsConfigs{holder: cfg.Table, sessions: cfg.Sessions, sessionIDs: cfg.SessionIDs},
		proxyPP: cfg.ProxyProtocol || len(cfg.TrustedProxies) > 0,
		addrs:   make(map[string]net.Addr),
		conns:   make(map[*trackedConn]struct{}),
	}
	s.base = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2", "http/1.1"},
		GetConfigForClient: s.tlsc.getConfigForClient,
	}
	s.handler = cfg.Handler
	if s.handler == nil {
		h, err := proxy.New(proxy.Config{
			Table:      cfg.Table,
			HTTPSPort:  portOf(cfg.HTTPSAddr),
			Registerer: cfg.Registerer,
			Log:        cfg.Log,
		})
		if err != nil {
			return nil, fmt.Errorf("server: default handler: %w", err)
		}
		s.handler = h
	}
	if err := s.newHTTPServers(); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// newHTTPServers builds the HTTP/1.1 engine and the HTTP/2 server, both
// served per connection (ServeConn) from the connection's goroutine.
func (s *Server) newHTTPServers() error {
	var err error
	s.h1, err = http1.NewServer(http1.ServerConfig{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		Log:               s.cfg.Log.WithValues("proto", "http/1.1"),
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.h2base = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          log.New(logrWriter{s.cfg.Log.WithValues("proto", "h2")}, "", 0),
	}
	s.h2 = &http2.Server{}
	// Registers the h2 connections' graceful shutdown (GOAWAY) with
	// h2base.Shutdown; h2base never serves a listener itself.
	if err := http2.ConfigureServer(s.h2base, s.h2); err != nil {
		return fmt.Errorf("server: HTTP/2: %w", err)
	}
	return nil
}

// portOf returns the numeric port of a host:port address, or 0.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TLSConfig returns the base TLS configuration: its GetConfigForClient picks
// the per-host configuration (certificate, policy, sessions, NextProtos h2
// and http/1.1) from the current table. Callers must Clone it before changing
// anything; for HTTP/3 use quic-go's http3.ConfigureTLSConfig, which rewrites
// NextProtos of the per-host configs too.
func (s *Server) TLSConfig() *tls.Config { return s.base }

// Handler returns the Handler serving both listeners.
func (s *Server) Handler() Handler { return s.handler }

// HTTPSAddr returns the bound TLS listener address, or nil before Start or
// when disabled. Useful with port 0.
func (s *Server) HTTPSAddr() net.Addr { return s.addr(listenerHTTPS) }

// HTTPAddr returns the bound plain HTTP listener address, or nil.
func (s *Server) HTTPAddr() net.Addr { return s.addr(listenerHTTP) }

func (s *Server) addr(kind string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[kind]
}

// Ready reports whether the server serves traffic: started, not shutting
// down, and a routing table published. Its signature fits admin.CheckFunc.
func (s *Server) Ready(context.Context) error {
	s.mu.Lock()
	started, stopping := s.started, s.stopping
	s.mu.Unlock()
	switch {
	case stopping:
		return errors.New("listeners shutting down")
	case !started:
		return errors.New("listeners not started")
	case s.cfg.Table.Load() == nil:
		return errors.New("no routing table yet")
	}
	return nil
}

// Start binds the configured listeners and starts serving. It returns once
// the sockets are bound (or with the first bind error, leaving nothing
// bound). ctx bounds binding only; use Shutdown to stop. Start may be called
// once; after Shutdown it fails.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopping {
		return errors.New("server: Start called twice or after Shutdown")
	}
	// TCP keep-alive after 30s idle with the kernel's probe interval and
	// count: two setsockopt calls per accepted connection instead of Go's
	// default four (idle, interval, count), on every connection of a
	// reconnect-heavy load.
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: -1, Count: -1}}
	type bound struct {
		kind string
		ln   net.Listener
	}
	var bs []bound
	for _, want := range []struct{ kind, addr string }{
		{listenerHTTPS, s.cfg.HTTPSAddr}, {listenerHTTP, s.cfg.HTTPAddr},
	} {
		if want.addr == "" {
			continue
		}
		ln, err := lc.Listen(ctx, "tcp", want.addr)
		if err != nil {
			for _, b := range bs {
				_ = b.ln.Close()
			}
			return fmt.Errorf("server: listen %s %s: %w", want.kind, want.addr, err)
		}
		bs = append(bs, bound{want.kind, ln})
	}
	s.started = true
	for _, b := range bs {
		s.listeners = append(s.listeners, b.ln)
		s.addrs[b.kind] = b.ln.Addr()
		s.wg.Add(1)
		go s.acceptLoop(b.ln, b.kind)
	}
	return nil
}

// acceptLoop accepts raw connections until the listener is closed.
func (s *Server) acceptLoop(ln net.Listener, kind string) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			// Resource exhaustion (EMFILE and friends): back off, bounded.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.cfg.Log.Error(err, "accept failed", "listener", kind, "retryIn", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		tc := s.track(c, kind)
		if tc == nil {
			_ = c.Close()
			s.m.rejected.WithLabelValues(kind, "limit").Inc()
			continue
		}
		s.m.acceptedBy[listenerIndex(kind)].Inc()
		s.wg.Add(1)
		go s.serveConn(tc, kind)
	}
}

// track registers c, or returns nil when MaxConns is reached or the server
// is stopping.
func (s *Server) track(c net.Conn, kind string) *trackedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || len(s.conns) >= s.cfg.MaxConns {
		return nil
	}
	tc := &trackedConn{Conn: c, srv: s, listener: kind}
	s.conns[tc] = struct{}{}
	s.m.openBy[listenerIndex(kind)].Inc()
	return tc
}

func (s *Server) untrack(tc *trackedConn) {
	s.mu.Lock()
	delete(s.conns, tc)
	s.mu.Unlock()
	s.m.openBy[listenerIndex(tc.listener)].Dec()
}

// serveConn runs the per-connection preamble, then serves HTTP on the
// same goroutine until the connection ends (unless PreTLS took it).
func (s *Server) serveConn(tc *trackedConn, kind string) {
	defer s.wg.Done()
	log := s.cfg.Log
	var c net.Conn = tc
	deadline := time.Now().Add(s.cfg.ReadHeaderTimeout)
	if s.proxyPP {
		pc, err := s.readProxyHeader(tc, deadline)
		if err != nil {
			s.m.rejected.WithLabelValues(kind, "proxy_protocol").Inc()
			if l := log.V(1); l.Enabled() {
				l.Info("connection refused", "listener", kind, "reason", err.Error())
			}
			_ = tc.Close()
			return
		}
		c = pc
	}
	info := http1.ConnInfo{RemoteAddr: addrPort(c.RemoteAddr())}
	if kind == listenerHTTPS {
		if s.cfg.PreTLS != nil {
			_ = c.SetReadDeadline(deadline)
			c2, took := s.cfg.PreTLS(c, s.cfg.Table.Load())
			if took {
				tc.handedOff.Store(true)
				return
			}
			c = c2
		}
		if s.tlsc.sessionIDs != nil {
			_ = c.SetReadDeadline(deadline)
			next, t12, failed := s.routeHello(c, s.cfg.Table.Load())
			switch {
			case failed:
				return
			case t12 != nil:
				s.serveTLS12(tc, t12, info)
				return
			}
			c = next
		}
		tlsConn := tls.Server(c, s.base)
		_ = tlsConn.SetDeadline(deadline)
		err := tlsConn.HandshakeContext(s.ctx)
		if err != nil {
			s.m.handshakeErrors.Inc()
			if l := log.V(1); l.Enabled() {
				l.Info("TLS handshake failed", "client", c.RemoteAddr().String(), "err", err.Error())
			}
			_ = tlsConn.Close()
			return
		}
		// The session layer's VerifyConnection counted the handshake.
		cs := tlsConn.ConnectionState()
		// The HTTP servers set their own deadlines: the h1 engine one per
		// read; x/net/http2 clears the handshake's on its own.
		if !s.handOff(tc) {
			_ = tlsConn.Close()
			return
		}
		if cs.NegotiatedProtocol == http2.NextProtoTLS {
			_ = tlsConn.SetDeadline(time.Time{})
			// Not s.ctx: Shutdown drains in-flight streams, it does not
			// cancel them.
			s.h2.ServeConn(tlsConn, &http2.ServeConnOpts{BaseConfig: s.h2base, Handler: s.handler})
			_ = tc.Close()
			return
		}
		info.TLS = true
		c = tlsConn
	} else if !s.handOff(tc) {
		_ = tc.Close()
		return
	}
	s.h1.ServeConn(c, info)
}

// serveTLS12 serves a session-ID path connection (internal/tls12) like a
// crypto/tls one: HTTP/2 when ALPN chose it, else HTTP/1.1.
func (s *Server) serveTLS12(tc *trackedConn, c *tls12.Conn, info http1.ConnInfo) {
	if !s.handOff(tc) {
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if c.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
		s.h2.ServeConn(c, &http2.ServeConnOpts{BaseConfig: s.h2base, Handler: s.handler})
		_ = tc.Close()
		return
	}
	info.TLS = true
	s.h1.ServeConn(c, info)
}

// handOff marks tc as serving requests (Shutdown drains it instead of
// closing it), or reports false when Shutdown began in the meantime.
func (s *Server) handOff(tc *trackedConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	tc.handedOff.Store(true)
	return true
}

// addrPort converts a TCP address; other kinds give the zero value.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// Shutdown stops accepting connections, closes idle keep-alive
// connections, lets in-flight requests (answered "Connection: close" on
// HTTP/1.1, after a GOAWAY on HTTP/2), upgraded connections (WebSockets)
// and passthrough connections finish, then returns. When ctx ends first,
// every remaining connection is closed and ctx's error is returned.
// Shutdown is idempotent and may be called concurrently or before Start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.stopping
	s.stopping = true
	listeners := s.listeners
	var preparing []*trackedConn
	if first {
		for tc := range s.conns {
			if !tc.handedOff.Load() {
				preparing = append(preparing, tc)
			}
		}
	}
	s.mu.Unlock()
	if first {
		s.cancel()
		for _, ln := range listeners {
			_ = ln.Close()
		}
		for _, tc := range preparing {
			_ = tc.Close()
		}
		s.h1.Shutdown()
	}
	var errs []error
	// GOAWAY to every HTTP/2 connection; h2base itself tracks nothing, so
	// this returns at once.
	if err := s.h2base.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("server: HTTP/2 drain: %w", err))
	}
	if len(errs) == 0 {
		if err := s.waitConns(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		s.forceClose()
	}
	s.wg.Wait()
	if ic, ok := s.handler.(interface{ CloseIdleConnections() }); ok {
		ic.CloseIdleConnections() // upstream pools of the proxy
	}
	return errors.Join(errs...)
}

// waitConns waits until every tracked connection is closed.
func (s *Server) waitConns(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server: %d connections still open: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

// forceClose closes every remaining connection.
func (s *Server) forceClose() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for tc := range s.conns {
		conns = append(conns, tc)
	}
	s.mu.Unlock()
	s.h1.Close()
	for _, tc := range conns {
		_ = tc.Close()
	}
}

// logrWriter adapts net/http's ErrorLog to logr at V(1): what it reports
// (client protocol errors, panics) is per-connection noise, not an operator
// error.
type logrWriter struct{ log logr.Logger }

func (w logrWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
