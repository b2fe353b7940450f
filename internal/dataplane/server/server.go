// Package server runs meshgate's client-facing TCP listeners: the TLS
// listener (per-SNI configurations from the tlsconfig.Set last applied) and
// the plain HTTP listener, both optionally behind PROXY protocol.
//
// Each accepted connection is served on one goroutine from start to end, in
// two stages, each in its own file:
//
//   - preparation (prepare.go), bounded by ReadHeaderTimeout so a slow
//     client never blocks the accept loop: PROXY header, the PreTLS hook
//     (SNI passthrough), the routing of ticketless TLS 1.2 ClientHellos to
//     the session-ID path (tls12route.go), the TLS handshake;
//   - serving (serve.go): HTTP/1.1 on meshgate's own engine
//     (internal/dataplane/http1) or, when ALPN chose h2, on its HTTP/2
//     engine (internal/dataplane/h2), with no hand-off to another
//     goroutine before the first request.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/h2"
	"github.com/meshgate/meshgate/internal/dataplane/http1"
	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
)

// Handler serves the requests of both listeners, HTTP/1.1 and HTTP/2, as
// exchanges. proxy.Handler is one.
type Handler interface {
	exchange.Handler
}

// Server owns the HTTPS and HTTP listeners. Its methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	m       *metrics
	tls     tlsconfig.Holder // per-host configs of the table last applied
	base    *tls.Config
	handler Handler
	proxyPP bool // PROXY protocol parsing enabled
	h1      *http1.Server
	h2      *h2.Server

	ctx    context.Context // cancelled when Shutdown begins
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	started   bool
	stopping  bool
	listeners []net.Listener
	addrs     map[string]net.Addr
	conns     map[*trackedConn]struct{}
	// wantFrontends are the frontend addresses last given to
	// SetFrontends; frontends the ones bound (frontend.go).
	wantFrontends []Frontend
	frontends     map[netip.AddrPort]*frontend
}

// New validates cfg and builds a Server; it does not bind anything.
func New(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("server: Config.Handler is required")
	}
	if err := trustedPrefixesValid(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	if cfg.ProxyProtocol && len(cfg.TrustedProxies) == 0 {
		return nil, errors.New("server: ProxyProtocol needs TrustedProxies (the load balancer's addresses)")
	}
	cfg.setDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		m:         m,
		handler:   cfg.Handler,
		proxyPP:   cfg.ProxyProtocol,
		addrs:     make(map[string]net.Addr),
		frontends: make(map[netip.AddrPort]*frontend),
		conns:     make(map[*trackedConn]struct{}),
	}
	s.base = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         tlsconfig.NextProtos,
		GetConfigForClient: s.tls.GetConfigForClient,
	}
	if err := s.newHTTPServers(); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Apply makes set the configurations new handshakes use, and its table the
// one PreTLS and the ClientHello routing see. The caller builds set when a
// table is published (tlsconfig.Build); Apply itself is one atomic store and
// is safe to call at any time.
func (s *Server) Apply(set *tlsconfig.Set) { s.tls.Store(set) }

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
	case s.tls.Load().Table() == nil:
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
	// count (keepalive_linux.go: set once on the listening socket).
	lc := listenConfig()
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
		go s.acceptLoop(b.ln, b.kind, nil)
	}
	if err := s.syncFrontendsLocked(ctx); err != nil {
		// The replica's own listeners serve; the frontends that failed are
		// retried by the next SetFrontends.
		s.cfg.Log.Error(err, "binding Gateway frontends")
	}
	return nil
}

// acceptLoop accepts raw connections until the listener is closed. fe is
// the listener's Gateway frontend, nil for the replica's own listeners.
func (s *Server) acceptLoop(ln net.Listener, kind string, fe *frontend) {
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
		tc := s.track(c, kind, fe)
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
func (s *Server) track(c net.Conn, kind string, fe *frontend) *trackedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || len(s.conns) >= s.cfg.MaxConns {
		return nil
	}
	tc := &trackedConn{Conn: c, srv: s, listener: kind, frontend: fe}
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
	for _, fe := range s.frontends {
		listeners = append(listeners, fe.ln)
	}
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
	// GOAWAY to every HTTP/2 connection; each closes once its streams are
	// done.
	s.h2.Shutdown()
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
	s.h2.Close()
	for _, tc := range conns {
		_ = tc.Close()
	}
}
