package l4

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshgate/meshgate/internal/dataplane/sni"
	"github.com/meshgate/meshgate/internal/routing"
)

// PassthroughConfig configures a Passthrough. The zero value is usable.
type PassthroughConfig struct {
	// PeekTimeout bounds the wait for the ClientHello; zero means
	// DefaultPeekTimeout. A negative value leaves the connection's read
	// deadline alone, so the caller's deadline (the server's handshake
	// budget) bounds the peek; use that when the caller sets one.
	PeekTimeout time.Duration
	// ConnectTimeout bounds each backend dial unless the Backend sets its
	// own; zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout closes a proxied connection after this long without a
	// byte in either direction; zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxConns bounds concurrently proxied connections; zero means
	// DefaultMaxConns. Connections over the limit are closed and counted.
	MaxConns int
	// Metrics receives the "passthrough" service's metrics; nil means
	// unregistered collectors.
	Metrics *Metrics
	// Log receives per-connection failures at V(1); the zero Logger
	// discards.
	Log logr.Logger
}

// Passthrough routes TLS connections whose SNI names a passthrough backend
// (routing.Table.Passthrough) to that backend without terminating TLS. It is
// the data plane's pre-TLS hook. A Passthrough is safe for concurrent use.
type Passthrough struct {
	cfg    PassthroughConfig
	m      *svcMetrics
	rr     roundRobin
	track  *tracker
	active atomic.Int64
}

// NewPassthrough returns a Passthrough with cfg's defaults filled in.
func NewPassthrough(cfg PassthroughConfig) *Passthrough {
	if cfg.PeekTimeout == 0 {
		cfg.PeekTimeout = DefaultPeekTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Metrics == nil {
		cfg.Metrics, _ = NewMetrics(nil)
	}
	return &Passthrough{cfg: cfg, m: cfg.Metrics.forService("passthrough"), track: newTracker()}
}

// Route inspects the TLS ClientHello of c. When t has a passthrough backend
// for its SNI, Route proxies the raw byte stream to one of the backend's
// endpoints (round robin, optionally preceded by a PROXY header announcing
// c.RemoteAddr() as the client) until either side closes or the idle
// timeout, closes c, and returns (nil, true). Connections it drops (peek
// I/O error or timeout, connection limit, no reachable endpoint) also
// return (nil, true), c closed.
//
// Otherwise it returns (conn, false) where conn replays the bytes already
// read: the caller must use conn, not c, for the TLS handshake. When t is nil
// or has no passthrough names, Route returns (c, false) without reading.
//
// Route blocks for the life of a passthrough connection (and up to the peek
// timeout otherwise): call it in the connection's own goroutine, never in
// the accept loop.
func (p *Passthrough) Route(c net.Conn, t *routing.Table) (net.Conn, bool) {
	if t == nil || len(t.Passthrough) == 0 {
		return c, false
	}
	name, wrapped, err := sni.Peek(c, max(p.cfg.PeekTimeout, 0))
	if err != nil {
		if isParseError(err) {
			return wrapped, false // let the TLS server answer with an alert
		}
		p.m.drop(dropPeek)
		p.cfg.Log.V(1).Info("passthrough: reading ClientHello failed", "remote", c.RemoteAddr().String(), "error", err.Error())
		c.Close()
		return nil, true
	}
	var b *routing.Backend
	if name != "" {
		b = t.PassthroughFor(name)
	}
	if b == nil {
		return wrapped, false
	}
	p.proxy(wrapped, b)
	return nil, true
}

// Terminated proxies the decrypted byte stream of a TLS connection the
// server terminated (c is the TLS connection, serverName its SNI) when t
// has a TLSRoute backend for the name (routing.Table.TerminatedFor),
// exactly as Route proxies a passthrough connection (same limits, metrics
// of the "passthrough" service, PROXY header to the backend when it asks
// for one), closes c and returns true. Otherwise it returns false without
// touching c. It blocks for the life of a proxied connection: it is the
// server's post-handshake hook (server.PostTLSFunc).
func (p *Passthrough) Terminated(c net.Conn, t *routing.Table, serverName string) bool {
	if t == nil || len(t.Terminated) == 0 || serverName == "" {
		return false
	}
	b := t.TerminatedFor(serverName)
	if b == nil {
		return false
	}
	p.proxy(c, b)
	return true
}

func isParseError(err error) bool {
	return errors.Is(err, sni.ErrNotTLS) || errors.Is(err, sni.ErrNotClientHello) ||
		errors.Is(err, sni.ErrTooLarge) || errors.Is(err, sni.ErrMalformed)
}

// proxy forwards c to b and closes c.
func (p *Passthrough) proxy(c net.Conn, b *routing.Backend) {
	p.m.conns.Inc()
	if !p.track.add(c) {
		c.Close()
		return
	}
	defer p.track.remove(c)
	if p.active.Add(1) > int64(p.cfg.MaxConns) {
		p.active.Add(-1)
		p.m.drop(dropLimit)
		c.Close()
		return
	}
	defer p.active.Add(-1)
	p.m.active.Inc()
	defer p.m.active.Dec()
	forward(p.track.ctx, c, b, &p.rr, p.cfg.ConnectTimeout, p.cfg.IdleTimeout, p.m, p.cfg.Log)
}

// forward dials b, sends the PROXY header b asks for, and pipes c ↔ backend.
// It closes c in every case.
func forward(ctx context.Context, c net.Conn, b *routing.Backend, rr *roundRobin, connectTimeout, idle time.Duration, m *svcMetrics, log logr.Logger) {
	if len(b.Endpoints) == 0 {
		m.drop(dropNoBackend)
		c.Close()
		return
	}
	up, err := dialBackend(ctx, rr, b, connectTimeout)
	if err != nil {
		m.drop(dropDial)
		log.V(1).Info("l4: backend unreachable", "backend", b.Name, "error", err.Error())
		c.Close()
		return
	}
	if v := b.ProxyProtocol; v == 1 || v == 2 {
		if err := writeProxyHeader(up, v, c, connectTimeout); err != nil {
			m.drop(dropProxyHdr)
			log.V(1).Info("l4: PROXY header to backend failed", "backend", b.Name, "error", err.Error())
			c.Close()
			up.Close()
			return
		}
	}
	pipe(c, up, idle, m)
}

// Shutdown stops routing new passthrough connections (they are closed),
// waits for proxied ones to finish until ctx is done, then closes them. It
// returns ctx.Err() if it had to force-close connections.
func (p *Passthrough) Shutdown(ctx context.Context) error {
	return p.track.shutdown(ctx)
}
