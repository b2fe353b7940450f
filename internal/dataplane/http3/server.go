// Package http3 serves HTTP/3 (quic-go) on the UDP twin of the HTTPS
// address, with QUIC variants of the data plane's per-host TLS
// configurations (built when a table is applied, with each host's 0-RTT
// policy) and an Alt-Svc middleware for the TCP listeners.
//
// Session resumption works across replicas without extra code: quic-go
// resumes through tls.Config.WrapSession/UnwrapSession, which the data
// plane points at the session mesh.
package http3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	qhttp3 "github.com/quic-go/quic-go/http3"

	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
)

// Config configures a Server.
type Config struct {
	// Addr is the UDP address to listen on ("127.0.0.1:8443"); required.
	Addr string
	// Handler serves requests; required. Requests carried in 0-RTT early
	// data with a method other than GET, HEAD or OPTIONS are answered
	// 425 Too Early before reaching it.
	Handler http.Handler
	// QUICConfig tunes quic-go (timeouts, stream limits); nil uses quic-go's
	// defaults. It is cloned; its Allow0RTT is decided per connection (see
	// Apply).
	QUICConfig *quic.Config
	// MaxHeaderBytes bounds request headers; zero means http's default.
	MaxHeaderBytes int
	// Registerer receives the meshgate_http3_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// Log receives serve errors; the zero Logger discards.
	Log logr.Logger
}

// Server is an HTTP/3 server. Start it once; Shutdown it once. Until the
// first Apply every handshake fails.
//
// 0-RTT follows each host's TLS policy (routing.TLSPolicy.Allow0RTT). QUIC's
// transport-level switch is per connection and runs before the SNI is known,
// so it is on for a new connection while any host of the applied table
// allows 0-RTT, and the host's own decision is enforced when its session is
// resumed (UnwrapSession clears SessionState.EarlyData). A client that tries
// 0-RTT on a host whose policy forbids it sees the early data rejected and
// must resend in 1-RTT (RFC 9001 4.6.2); browsers and curl do, quic-go's own
// http3.Transport fails that request instead. While no host allows 0-RTT,
// tickets do not invite it at all. The session layer makes early data
// single-use across the cluster (only the issuing replica accepts it,
// once; docs/sessionmesh.md), and the request pipeline decides by the
// routed host's policy and adds "Early-Data: 1" (proxy.ServeExchange).
type Server struct {
	cfg     Config
	tls     atomic.Pointer[tlsState]
	tlsConf *tls.Config
	h3      *qhttp3.Server
	m       *metrics

	mu    sync.Mutex
	pc    net.PacketConn
	ln    *quic.EarlyListener
	done  chan struct{} // closed when the serve goroutine returns
	start bool
}

type metrics struct {
	conns, tooEarly, refused0RTT prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		conns:       prometheus.NewCounter(prometheus.CounterOpts{Name: "meshgate_http3_connections_total", Help: "QUIC connections accepted for HTTP/3."}),
		tooEarly:    prometheus.NewCounter(prometheus.CounterOpts{Name: "meshgate_http3_too_early_total", Help: "Requests in 0-RTT early data answered 425 Too Early."}),
		refused0RTT: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshgate_http3_0rtt_refused_total", Help: "Resumptions whose 0-RTT early data the host's TLS policy refused."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.conns, m.tooEarly, m.refused0RTT} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("http3: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// connKey is the context key under which ConnContext stores the QUIC
// connection of a request.
type connKey struct{}

// New validates cfg and prepares a Server; it does not bind.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" || cfg.Handler == nil {
		return nil, errors.New("http3: Addr and Handler are required")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, m: m}
	s.tlsConf = &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{qhttp3.NextProtoH3},
		GetConfigForClient: s.getConfigForClient,
	}
	s.h3 = &qhttp3.Server{
		Handler:        earlyDataGuard(cfg.Handler, m.tooEarly),
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			m.conns.Inc()
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	return s, nil
}

// Apply derives the QUIC configurations of set (the data plane's per-host
// configurations of a newly published table) and serves them to new
// connections. The caller calls it when a table is published, from one
// goroutine at a time; handshakes only load the result.
func (s *Server) Apply(set *tlsconfig.Set) {
	s.tls.Store(newTLSState(set, s.m.refused0RTT.Inc))
}

// any0RTT reports whether a host of the applied table allows 0-RTT.
func (s *Server) any0RTT() bool {
	st := s.tls.Load()
	return st != nil && st.any0RTT
}

// Start binds the UDP socket and serves in a background goroutine until
// Shutdown or until ctx is done (which closes the server at once). It
// returns the bind error, if any.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start {
		return errors.New("http3: server already started")
	}
	qc := &quic.Config{}
	if s.cfg.QUICConfig != nil {
		qc = s.cfg.QUICConfig.Clone()
	}
	// Two prepared variants; quic-go asks per connection, before the
	// ClientHello (and so the SNI) is known.
	qc.Allow0RTT = true
	on, off := qc.Clone(), qc.Clone()
	off.Allow0RTT = false
	qc.GetConfigForClient = func(*quic.ClientInfo) (*quic.Config, error) {
		if s.any0RTT() {
			return on, nil
		}
		return off, nil
	}
	pc, err := net.ListenPacket("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http3: listen %s: %w", s.cfg.Addr, err)
	}
	ln, err := quic.ListenEarly(pc, s.tlsConf, qc)
	if err != nil {
		pc.Close()
		return fmt.Errorf("http3: quic listener: %w", err)
	}
	s.pc, s.ln, s.done, s.start = pc, ln, make(chan struct{}), true
	go func() {
		defer close(s.done)
		if err := s.h3.ServeListener(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
			s.cfg.Log.Error(err, "http3: serve failed", "addr", s.cfg.Addr)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.h3.Close()
			s.closeListener()
		case <-s.done:
		}
	}()
	return nil
}

// Addr returns the bound UDP address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		return nil
	}
	return s.pc.LocalAddr()
}

// Shutdown sends GOAWAY to every connection, waits for in-flight requests
// until ctx is done, then closes the listener and the UDP socket and waits
// for the serve goroutine. Safe to call before Start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started := s.start
	s.mu.Unlock()
	if !started {
		return nil
	}
	err := s.h3.Shutdown(ctx)
	s.closeListener()
	<-s.done
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http3: shutdown: %w", err)
	}
	return nil
}

func (s *Server) closeListener() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.pc.Close()
	}
}

// handshakeWaiter is the part of *quic.Conn the early-data guard uses.
type handshakeWaiter interface {
	HandshakeComplete() <-chan struct{}
}

// earlyDataGuard answers 425 Too Early (RFC 8470) to requests with an
// unsafe method that arrived in 0-RTT early data. A request the server
// handles before the QUIC handshake is complete can only have come in
// 0-RTT; once the handshake completed the client is proven live, so replay
// is no longer a concern even for streams opened in 0-RTT. Requests that an
// intermediary marked "Early-Data: 1" are treated the same.
func earlyDataGuard(next http.Handler, tooEarly prometheus.Counter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !safeMethod(r.Method) && isEarly(r) {
			tooEarly.Inc()
			http.Error(w, "Too Early", http.StatusTooEarly)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isEarly(r *http.Request) bool {
	if r.Header.Get("Early-Data") == "1" {
		return true
	}
	c, ok := r.Context().Value(connKey{}).(handshakeWaiter)
	if !ok {
		return false
	}
	select {
	case <-c.HandshakeComplete():
		return false
	default:
		return true
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// AltSvc returns a handler that advertises HTTP/3 on UDP port port
// (`Alt-Svc: h3=":port"; ma=86400`) on every response to a request that
// came over TLS, then calls next. port <= 0 returns next unchanged.
func AltSvc(next http.Handler, port int) http.Handler {
	if port <= 0 {
		return next
	}
	v := []string{AltSvcValue(port)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header()["Alt-Svc"] = v
		}
		next.ServeHTTP(w, r)
	})
}

// AltSvcValue is the Alt-Svc field value advertising HTTP/3 on UDP port
// port for a day: `h3=":port"; ma=86400`.
func AltSvcValue(port int) string { return `h3=":` + strconv.Itoa(port) + `"; ma=86400` }
