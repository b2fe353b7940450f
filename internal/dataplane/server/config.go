package server

import (
	"net"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/routing"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxConns          = 10000
)

// PreTLSFunc inspects a connection accepted on the TLS port before the TLS
// handshake (after PROXY protocol parsing). If it returns true it has taken
// ownership of the connection (SNI passthrough) and the server forgets it;
// it must then close it. Otherwise the server continues with the returned
// connection, which must replay any bytes the function peeked. t is the
// table of the configurations last applied (nil before the first Apply).
//
// The connection arrives with a read deadline (the end of the handshake
// budget, ReadHeaderTimeout); a function taking ownership must set its own
// deadlines. It runs on the connection's goroutine and may block for the
// life of a connection it took (l4.Passthrough.Route fits).
type PreTLSFunc func(c net.Conn, t *routing.Table) (net.Conn, bool)

// PostTLSFunc is offered every completed TLS handshake before HTTP is
// served: c is the TLS connection, t the table its listener routes by
// (the frontend's for a Gateway frontend) and serverName the SNI it
// negotiated. If it returns true it has taken ownership of c (a TLSRoute
// in mode Terminate: the decrypted stream goes to a TCP backend) and must
// close it; it runs on the connection's goroutine and may block for the
// connection's life (l4.Passthrough.Terminated fits). c arrives without
// deadlines. False: HTTP is served on c, which the function must not
// have read from.
type PostTLSFunc func(c net.Conn, t *routing.Table, serverName string) bool

// Config configures a Server. The zero value of every field means the
// documented default; Handler is required. The routing table reaches the
// server through Apply, not through Config.
type Config struct {
	// HTTPSAddr is the TLS listener address ("" disables it).
	HTTPSAddr string
	// HTTPAddr is the plain HTTP listener address ("" disables it).
	HTTPAddr string

	// ProxyProtocol requires a PROXY protocol v1/v2 header on every
	// connection of both listeners, from a source in TrustedProxies (which
	// must then be non-empty); connections from other sources, and trusted
	// connections without a header, are refused.
	//
	// With ProxyProtocol false no PROXY header is ever parsed, whatever
	// TrustedProxies says: a client that prepends one only sends bytes that
	// are neither TLS nor HTTP. (An optional header from trusted sources
	// would let anyone who reaches the listener from a trusted address — a
	// service-mesh sidecar on loopback, kubectl port-forward — choose the
	// client address.)
	//
	// The address carried by the header becomes the connection's RemoteAddr,
	// hence the request's RemoteAddr, X-Forwarded-For and the access log.
	ProxyProtocol  bool
	TrustedProxies []netip.Prefix

	// Deny, if set, is the deny list: a connection whose client address
	// (the PROXY header's when ProxyProtocol is on) it holds is closed
	// right after accept and the PROXY header, before PreTLS, TLS or
	// HTTP, and counted (connections_rejected_total{reason="deny"} and the
	// list's own counter). Nil denies nothing.
	Deny *deny.List

	// PreTLS, if set, is called for each connection on the TLS port before
	// the handshake (SNI passthrough hook). See PreTLSFunc.
	PreTLS PreTLSFunc
	// PostTLS, if set, is offered each completed TLS handshake before
	// HTTP is served (TLSRoute termination hook). See PostTLSFunc.
	PostTLS PostTLSFunc

	// Handler serves requests of both listeners; required.
	Handler Handler

	// ReadHeaderTimeout bounds the PROXY header, the TLS handshake and the
	// reading of request headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers. Default 64 KiB.
	MaxHeaderBytes int
	// WriteTimeout bounds writing a response (each response on HTTP/1.1);
	// zero means none, so that streaming responses and WebSockets are not
	// cut.
	WriteTimeout time.Duration
	// MaxConns bounds the open connections of both listeners together,
	// including hijacked and passthrough ones; further connections are
	// closed at accept. Default 10000.
	MaxConns int

	// Registerer receives the server's metrics.
	// Nil means metrics are kept but not registered.
	Registerer prometheus.Registerer
	// Log receives errors and, at V(1), per-connection events. The zero
	// value discards.
	Log logr.Logger
}

func (c *Config) setDefaults() {
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
}
