// Package proxy is meshgate's request handler: it routes each exchange
// (internal/dataplane/exchange) by host, path and the route's conditions on
// the current routing table and forwards it to a backend endpoint, with
// round robin, weighted Gateway API backends, passive ejection of endpoints
// that refuse connections, one retry for idempotent requests, X-Forwarded-*
// headers, WebSocket and other upgrades, per-backend limits, metrics and an
// access log.
//
// Plain-HTTP backends are reached over pooled keep-alive HTTP/1.1
// connections of its own (http1's parser), on the goroutine serving the
// exchange: borrow a connection, write the request, read and stream the
// response back, return the connection. Nothing runs in the background per
// request or per connection. h2c, gRPC and HTTPS backends, which speak
// HTTP/2, go through net/http's Transport.
//
// Every front end reaches the same pipeline: the HTTP/1.1 and HTTP/2
// engines call ServeExchange directly; HTTP/3 comes through ServeHTTP,
// which adapts a net/http request. Per-route features plug into ServeExchange's
// pipeline (see the exchange package documentation).
package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/filter"
	"github.com/meshgate/meshgate/internal/dataplane/http1"
	"github.com/meshgate/meshgate/internal/routing"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultConnectTimeout      = 5 * time.Second
	DefaultResponseTimeout     = 60 * time.Second
	DefaultBodyReadTimeout     = 60 * time.Second
	DefaultMaxIdleConns        = 2048
	DefaultMaxIdleConnsPerHost = 256
)

// Config configures a Handler. Zero values mean the documented defaults;
// Table is required.
type Config struct {
	// HTTPSPort is the port put into SSL redirects; 0 or 443 means none
	// ("https://host/path").
	HTTPSPort int

	// ConnectTimeout bounds connecting to an endpoint when the backend sets
	// none. Default 5s.
	ConnectTimeout time.Duration
	// ResponseTimeout bounds the wait for upstream response headers (not
	// the body, so streams and WebSockets are not cut) when the backend
	// sets none. Default 60s.
	ResponseTimeout time.Duration
	// MaxBodyBytes bounds request bodies (413 beyond) when the backend sets
	// none. Zero means unlimited.
	MaxBodyBytes int64

	// BodyReadTimeout bounds the wait for each read of a request body (a
	// client stalling longer gets 408). It is an idle timeout, so large
	// uploads at any steady rate pass. Default 60s.
	BodyReadTimeout time.Duration

	// MaxIdleConns and MaxIdleConnsPerHost bound the idle upstream
	// connections kept for reuse, in all and per endpoint. Defaults 2048
	// and 256. MaxIdleConnsPerHost must cover the concurrent requests to
	// one endpoint: beyond it every finished upstream connection is closed
	// and the next request dials (HTTP/2 clients multiplex many streams
	// onto few client connections, so concurrency per endpoint can exceed
	// the client connection count).
	MaxIdleConns        int
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes upstream connections idle this long.
	// Default 90s.
	IdleConnTimeout time.Duration

	// TrustedForwarders are the client addresses whose own X-Forwarded-For
	// is kept (with the client address appended): proxies in front of
	// meshgate. From any other client the field is replaced by the client
	// address, so a client cannot forge the chain. Empty trusts nobody.
	TrustedForwarders []netip.Prefix

	// UnderscoresInHeaders passes request fields whose names contain "_"
	// to backends. False (the default) drops them, as nginx does
	// (underscores_in_headers off): CGI and WSGI stacks map both
	// X_Real_IP and X-Real-IP to HTTP_X_REAL_IP, so such a field would
	// smuggle a value past the X-Real-Ip / X-Forwarded-* meshgate sets.
	UnderscoresInHeaders bool

	// Deny, if set, is the deny list: a request whose client address it
	// holds is answered 403 and its connection closed (connections opened
	// before the address was denied, HTTP/3). Nil denies nothing.
	Deny *deny.List

	// AffinityKey keys the MAC of affinity cookies (routing.CookieAffinity);
	// every replica of a cluster must have the same one so that each routes
	// the others' cookies. Empty means a random key: cookies then route on
	// this process only.
	AffinityKey []byte

	// Limiter decides the request rates of routes with a
	// routing.RequestLimit; every replica passes its mesh node's
	// (sessionmesh.Node.Limiter), whose counts the replicas exchange, so
	// the rates are cluster-wide. Nil: no limit of a table is enforced.
	Limiter *ratelimit.Limiter

	// Sticky is the replicated table sticky learn records sessions in
	// (routing.LearnAffinity, a clusterstate zone). Nil turns sticky learn
	// off: such backends are balanced like any other.
	Sticky StickyTable

	// AltSvc, if set, is added as an Alt-Svc field to the responses of
	// requests that came over TLS (advertising HTTP/3).
	AltSvc string

	// Registerer receives the request metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Log gets the access log at V(1) and upstream errors at V(1); the zero
	// value discards.
	Log logr.Logger
}

// Handler is the reverse proxy. It serves exchanges (ServeExchange) and,
// through an adapter, net/http requests (ServeHTTP). It is safe for
// concurrent use.
type Handler struct {
	cfg     Config
	log     logr.Logger
	metrics *metrics
	up      *upstreams
	none    *backendMetrics // requests answered without a backend
	states  sync.Pool       // *exchangeState
	mirrors chan struct{}   // semaphore of mirrored requests in flight
}

// New builds a Handler.
func New(cfg Config) (*Handler, error) {
	for _, p := range cfg.TrustedForwarders {
		if !p.IsValid() {
			return nil, errors.New("proxy: invalid trusted forwarder prefix")
		}
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.MaxIdleConns <= 0 {
		cfg.MaxIdleConns = DefaultMaxIdleConns
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = DefaultIdleConnTimeout
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, log: cfg.Log, metrics: m, mirrors: make(chan struct{}, maxMirrors)}
	h.up = newUpstreams(&h.cfg, m)
	h.none = newBackendMetrics(m, "none")
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.up.limits); err != nil {
			return nil, fmt.Errorf("proxy: register request-limit metrics: %w", err)
		}
	}
	return h, nil
}

// Apply builds the upstream state of every backend of t (connection
// pools, health carried over by address, metric children) and makes t the
// table requests are routed on. The table subscriber calls it when a table
// is published, from one goroutine at a time; requests only load the
// result (one atomic load). A nil t changes nothing.
func (h *Handler) Apply(t *routing.Table) { h.up.apply(t) }

// CloseIdleConnections closes idle upstream connections (for shutdown).
func (h *Handler) CloseIdleConnections() { h.up.closeIdle() }

// exchangeState is the per-exchange state of the pipeline, pooled. It is
// used only by the goroutine serving the exchange.
type exchangeState struct {
	h      *Handler
	w      exchange.ResponseWriter
	r      *exchange.Request
	bs     *backendState
	rt     *routing.Route
	idx    int // endpoint index in bs.b.Endpoints; -1 before one is chosen
	pinned int // endpoint index the affinity cookie or learned session named; -1: none
	learn  learnRequest

	connSlot *connLimit // the concurrency-limit slot held (limit.go); nil: none
	connKey  uint64

	respMods   [2]*routing.HeaderModifier // route's and backend's response modifiers
	stopCancel func() bool                // stops the client-cancellation hook of a round trip
	mirrored   bool                       // a mirrored copy: nobody reads the response

	status  int  // status answered (or 499)
	wrote   bool // the final head went to the client
	sent100 bool // a 100 (Continue) went to the client

	out  exchange.Header // fields of responses made here
	cbuf *http1.Buf      // body copy buffer, borrowed on demand
}

func (h *Handler) getState(w exchange.ResponseWriter, r *exchange.Request) *exchangeState {
	x, _ := h.states.Get().(*exchangeState)
	if x == nil {
		x = &exchangeState{h: h}
	}
	x.w, x.r, x.idx, x.pinned = w, r, -1, -1
	return x
}

func (h *Handler) putState(x *exchangeState) {
	if x.cbuf != nil {
		http1.PutBuf(x.cbuf)
	}
	out := x.out
	out.Reset()
	*x = exchangeState{h: h, out: out}
	h.states.Put(x)
}

// copyBuf returns the exchange's body copy buffer.
func (x *exchangeState) copyBuf() []byte {
	if x.cbuf == nil {
		x.cbuf = http1.GetBuf(http1.LargeBuffer)
	}
	return x.cbuf.B
}

// ServeExchange implements exchange.Handler: route, then forward.
func (h *Handler) ServeExchange(w exchange.ResponseWriter, r *exchange.Request) {
	x := h.getState(w, r)
	defer h.putState(x)
	bm := x.serve()
	x.releaseLimit()
	upstream := ""
	if x.idx >= 0 {
		upstream = x.bs.b.Endpoints[x.idx]
	}
	h.finish(r, bm, upstream, x.status)
}

// serve runs the pipeline and returns the metrics the exchange counts in.
func (x *exchangeState) serve() *backendMetrics {
	h, r := x.h, x.r
	if h.cfg.Deny.Refuse(r.RemoteAddr.Addr(), deny.StageRequest) {
		r.Close = true
		x.plain(403, "forbidden\n")
		return h.none
	}
	ts := h.up.cur.Load()
	if ts == nil {
		x.plain(503, "no routing table\n")
		return h.none
	}
	t := ts.table.For(r.Frontend) // a Gateway's own address: its routes only
	isTLS := r.Scheme == "https"
	if isTLS && x.misdirected(t) {
		return h.none
	}
	rt, vh := t.HTTP.Route(r.Host, filter.ExchangeRequest{R: r}, isTLS)
	if !isTLS && vh != nil && vh.SSLRedirect {
		x.redirect()
		return h.none
	}
	var b *routing.Backend
	switch {
	case rt == nil:
		b = t.HTTP.DefaultBackend
	case rt.Backend != nil: // an Ingress rule
		b, x.rt = rt.Backend, rt
	default: // a Gateway API rule
		x.rt = rt
		if b = x.gatewayRequest(ts, rt); b == nil {
			return h.none
		}
	}
	if b == nil {
		x.plain(404, "no route\n")
		return h.none
	}
	x.bs = h.up.backend(ts, b)
	if x.rt != nil && x.rt.Limit != nil && x.limited(ts, x.rt.Limit) {
		return x.bs.metrics
	}
	if len(b.Endpoints) == 0 {
		x.plain(503, "no endpoints\n")
		return x.bs.metrics
	}
	if x.bs.maxBody > 0 && r.ContentLength > x.bs.maxBody {
		r.Close = r.Body != nil // the body stays unread
		x.plain(413, "request body too large\n")
		return x.bs.metrics
	}
	if af := x.bs.affinity; af != nil && (rt == nil || rt.Backend != nil) {
		x.pinned = af.pinned(&r.Header, time.Now()) // Gateway rules: gatewayRequest did
	} else if ls := x.bs.learn; ls != nil {
		x.pinned = ls.lookup(&r.Header, &x.learn, time.Now())
	}
	if x.idx = x.pinned; x.idx < 0 {
		x.idx = x.bs.pick(time.Now(), -1)
	}
	if r.Body != nil {
		r.Body.SetReadTimeout(h.cfg.BodyReadTimeout)
	}
	if x.bs.pools != nil {
		x.forwardH1()
	} else {
		x.forwardTransport()
	}
	return x.bs.metrics
}

// misdirected answers a request that its TLS connection may not carry
// and reports whether it did. The connection's certificate and TLS policy
// were chosen by its SNI, the route is chosen by Host: a request whose
// Host selects a TLS host under another policy (versions, suites, curves,
// session mode, 0-RTT; routing.TLSPolicy.SameTLS) than the connection's
// would bypass that policy, so it gets 421 Misdirected Request (RFC 9110
// §15.5.20), which tells clients to retry on a connection of its own.
// Hosts sharing one TLS host (one wildcard certificate) or the same
// policy may share connections: that is HTTP/2 and HTTP/3 connection
// reuse (RFC 9113 §9.1.1, RFC 9114 §3.3). A request for a host without a
// TLS host of its own, on a table without a default certificate, is
// misdirected as well: no handshake for it could have succeeded.
//
// Requests that arrived in 0-RTT early data must be for a host whose
// policy allows 0-RTT; otherwise they get 425 Too Early (RFC 8470 §5.2)
// and the client resends them after the handshake.
func (x *exchangeState) misdirected(t *routing.Table) bool {
	r := x.r
	conn := t.TLS.Lookup(r.ServerName)
	req := conn
	if !sameHostName(r.ServerName, r.Host) {
		req = t.TLS.Lookup(r.Host)
	}
	if req != conn && (req == nil || conn == nil || !req.Policy.SameTLS(conn.Policy)) {
		r.Close = r.Body != nil // the body stays unread
		x.plain(421, "misdirected request: this connection's TLS settings are not the host's\n")
		return true
	}
	if r.EarlyData && (req == nil || req.Policy == nil || !req.Policy.Allow0RTT) {
		r.Close = r.Body != nil
		x.plain(425, "too early\n")
		return true
	}
	return false
}

// sameHostName reports whether host (a Host field, maybe with a port)
// names serverName, ASCII case-insensitively: the common case, which
// needs no second TLS host lookup.
func sameHostName(serverName, host string) bool {
	if len(host) > len(serverName) && host[len(serverName)] == ':' && strings.IndexByte(host[len(serverName)+1:], ':') < 0 {
		host = host[:len(serverName)]
	}
	return serverName != "" && exchange.EqualFold(serverName, host)
}

// finish records metrics and the access log of one exchange.
func (h *Handler) finish(r *exchange.Request, bm *backendMetrics, upstream string, status int) {
	d := time.Since(r.Start)
	bm.request(r.Method, status).Inc()
	bm.duration.Observe(d.Seconds())
	if l := h.log.V(1); l.Enabled() {
		l.Info("access", "client", r.ClientIP, "method", r.Method, "host", r.Host,
			"uri", r.Target, "proto", r.Proto.String(), "status", status, "backend", bm.name,
			"upstream", upstream, "duration", d)
	}
}

// plain answers a short text response; a gRPC call gets the gRPC
// equivalent instead (grpcReply), except 421 and 425, which ask the client
// to retry on another connection or after the handshake and mean that only
// as HTTP statuses.
func (x *exchangeState) plain(status int, body string) {
	if status != 421 && status != 425 && isGRPC(x.r) {
		x.grpcReply(status, body)
		return
	}
	x.out.Reset()
	x.out.Add("Content-Type", "text/plain; charset=utf-8")
	x.out.Add("X-Content-Type-Options", "nosniff")
	x.respond(status, body)
}

// serverName is the Server field of every response, replacing the
// upstream's, as nginx and Envoy do by default (the Ingress conformance
// scenarios require one).
const serverName = "meshgate"

// respond writes the final head with x.out and body.
func (x *exchangeState) respond(status int, body string) {
	x.status, x.wrote = status, true
	x.out.Set("Server", serverName)
	if x.h.cfg.AltSvc != "" && x.r.Scheme == "https" {
		x.out.Add("Alt-Svc", x.h.cfg.AltSvc)
	}
	if err := x.w.WriteHeader(status, &x.out, int64(len(body))); err != nil {
		return
	}
	if body != "" {
		if _, err := x.w.Write(unsafeBytes(body)); err != nil {
			return
		}
	}
	_ = x.w.Finish(nil)
}

// redirect answers 308 to the HTTPS URL of the request: same host (port
// replaced by HTTPSPort, or dropped), same target.
func (x *exchangeState) redirect() {
	x.out.Reset()
	x.out.Add("Location", redirectLocation(x.r.Host, x.r.Target, x.h.cfg.HTTPSPort))
	x.respond(308, "")
}

// redirectLocation returns https://host[:port]uri for an SSL redirect.
func redirectLocation(host, uri string, port int) string {
	if hst, _, err := net.SplitHostPort(host); err == nil {
		host = hst
		if strings.IndexByte(host, ':') >= 0 {
			host = "[" + host + "]"
		}
	}
	if port != 0 && port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	return "https://" + host + uri
}
