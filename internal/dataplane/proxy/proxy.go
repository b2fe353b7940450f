// Package proxy is meshgate's HTTP request handler: it routes each request
// by host and path on the current routing table and reverse-proxies it to a
// backend endpoint over pooled upstream connections (HTTP/1.1, HTTPS with
// HTTP/2, or h2c), with round robin, passive ejection of endpoints that
// refuse connections, one retry for idempotent requests, X-Forwarded-*
// headers, WebSocket upgrades, per-backend limits, metrics and an access log.
package proxy

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/dataplane/filter"
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
	// Table publishes the routing table, read once per request.
	Table *routing.Holder

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

	// MaxIdleConns and MaxIdleConnsPerHost size the upstream pools of each
	// shared transport. Defaults 2048 and 256. MaxIdleConnsPerHost must
	// cover the concurrent requests to one endpoint: beyond it every
	// finished upstream connection is closed and the next request dials
	// (HTTP/2 clients multiplex many streams onto few client connections,
	// so concurrency per endpoint can exceed the client connection count).
	MaxIdleConns        int
	MaxIdleConnsPerHost int

	// Registerer receives the request metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Log gets the access log at V(1) and upstream errors at V(1); the zero
	// value discards.
	Log logr.Logger
}

// Handler is the reverse proxy. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	log     logr.Logger
	metrics *metrics
	up      *upstreams
	rp      *httputil.ReverseProxy
	none    *backendMetrics // requests answered without a backend
	mirrors chan struct{}   // semaphore of mirrored requests in flight
}

// New builds a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Table == nil {
		return nil, errors.New("proxy: Config.Table is required")
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
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, log: cfg.Log, metrics: m, mirrors: make(chan struct{}, maxMirrors)}
	h.up = newUpstreams(&h.cfg, m)
	h.none = newBackendMetrics(m, "none")
	h.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      roundTripper{},
		ModifyResponse: modifyResponse,
		ErrorHandler:   h.errorHandler,
		BufferPool:     &bufferPool{},
		ErrorLog:       log.New(logWriter{cfg.Log}, "", 0),
	}
	return h, nil
}

// CloseIdleConnections closes idle upstream connections (for shutdown).
func (h *Handler) CloseIdleConnections() { h.up.closeIdle() }

// reqState is the per-request state, carried in the request context so that
// Rewrite, the transport, ModifyResponse and ErrorHandler see it. It is used
// only by goroutines of the request's ServeHTTP call.
type reqState struct {
	context.Context
	be       *backendState
	idx      int // endpoint index in be.b.Endpoints
	attempts int
	status   int
	clientIP string
	body     *timedBody // nil for requests without a body
	route    routeFeatures
	hv       [4]string // header values backing store
}

type stateKey struct{}

// Value implements context.Context: the state is its own context node, so
// attaching it costs one allocation.
func (st *reqState) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return st
	}
	return st.Context.Value(key)
}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t := h.cfg.Table.Load()
	if t == nil {
		h.finish(r, start, h.none, "", h.plain(w, http.StatusServiceUnavailable, "no routing table\n"))
		return
	}
	view := filter.HTTPRequest{R: r}
	route, vh := t.HTTP.Route(r.Host, &view, r.TLS != nil)
	if r.TLS == nil && vh != nil && vh.SSLRedirect {
		h.finish(r, start, h.none, "", h.redirect(w, r))
		return
	}
	backend := t.HTTP.DefaultBackend
	var rf routeFeatures
	if route != nil {
		backend = route.Backend
		if backend == nil { // a Gateway API rule
			var cancel context.CancelFunc
			var done bool
			if r, backend, rf, cancel, done = h.gatewayRequest(w, r, route, start); done {
				return
			}
			if cancel != nil {
				defer cancel()
			}
		}
	}
	if backend == nil {
		h.finish(r, start, h.none, "", h.plain(w, http.StatusNotFound, "no route\n"))
		return
	}
	bs := h.up.backend(t, backend)
	if len(backend.Endpoints) == 0 {
		h.finish(r, start, bs.metrics, "", h.plain(w, http.StatusServiceUnavailable, "no endpoints\n"))
		return
	}
	if bs.maxBody > 0 {
		if r.ContentLength > bs.maxBody {
			h.finish(r, start, bs.metrics, "", h.plain(w, http.StatusRequestEntityTooLarge, "request body too large\n"))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, bs.maxBody)
		}
	}
	st := &reqState{Context: r.Context(), be: bs, clientIP: clientIP(r.RemoteAddr), route: rf}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		st.body = &timedBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: h.cfg.BodyReadTimeout}
		defer st.body.finish()
		r.Body = st.body
	}
	st.idx = bs.pick(start, -1)
	defer func() {
		// ReverseProxy panics with http.ErrAbortHandler when the response
		// copy fails midway; count the request before net/http sees it.
		if p := recover(); p != nil {
			h.finish(r, start, bs.metrics, backend.Endpoints[st.idx], st.status)
			panic(p)
		}
	}()
	h.rp.ServeHTTP(w, r.WithContext(st))
	h.finish(r, start, bs.metrics, backend.Endpoints[st.idx], st.status)
}

// finish records metrics and the access log of one request.
func (h *Handler) finish(r *http.Request, start time.Time, bm *backendMetrics, upstream string, status int) {
	d := time.Since(start)
	bm.request(r.Method, status).Inc()
	bm.duration.Observe(d.Seconds())
	if l := h.log.V(1); l.Enabled() {
		l.Info("access", "client", clientIP(r.RemoteAddr), "method", r.Method, "host", r.Host,
			"uri", r.RequestURI, "proto", r.Proto, "status", status, "backend", bm.name,
			"upstream", upstream, "duration", d)
	}
}

// rewrite is the ReverseProxy's Rewrite: target endpoint and X-Forwarded-*.
// The incoming X-Forwarded-For is kept and the client address appended; the
// other X-Forwarded-* and X-Real-IP are set from what meshgate saw.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = st.be.scheme
	out.URL.Host = st.be.b.Endpoints[st.idx]
	out.Host = pr.In.Host

	xff := st.clientIP
	if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + st.clientIP
	}
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	st.hv = [4]string{xff, proto, pr.In.Host, st.clientIP}
	out.Header["X-Forwarded-For"] = st.hv[0:1:1]
	out.Header["X-Forwarded-Proto"] = st.hv[1:2:2]
	out.Header["X-Forwarded-Host"] = st.hv[2:3:3]
	out.Header["X-Real-Ip"] = st.hv[3:4:4]
}

func modifyResponse(resp *http.Response) error {
	if st := stateFrom(resp.Request.Context()); st != nil {
		st.status = resp.StatusCode
		st.route.modifyResponseHeaders(resp.Header)
	}
	return nil
}

// errorHandler answers upstream failures: 413 for an oversized body, 504 for
// timeouts, 502 otherwise; nothing for a client that went away.
func (h *Handler) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	reason, status := "other", http.StatusBadGateway
	var mbe *http.MaxBytesError
	var ne net.Error
	var de *dialError
	switch {
	case errors.As(err, &mbe):
		reason, status = "body_too_large", http.StatusRequestEntityTooLarge
	case errors.Is(err, errBodyTimeout) || (st != nil && st.body != nil && st.body.timedOut.Load()):
		reason, status = "client_body_timeout", http.StatusRequestTimeout
	case st != nil && st.route.timeout && errors.Is(r.Context().Err(), context.DeadlineExceeded):
		reason, status = "timeout", http.StatusGatewayTimeout // the route's timeout
	case r.Context().Err() != nil:
		reason, status = "canceled", 499 // nginx's "client closed request"
	case errors.As(err, &ne) && ne.Timeout():
		reason, status = "timeout", http.StatusGatewayTimeout
	case errors.As(err, &de):
		reason = "connect"
	}
	name := ""
	if st != nil {
		st.status = status
		name = st.be.b.Name
	}
	h.metrics.upstream.WithLabelValues(name, reason).Inc()
	if l := h.log.V(1); l.Enabled() {
		l.Info("upstream error", "backend", name, "reason", reason, "err", err.Error())
	}
	if status == 499 {
		return
	}
	if status == http.StatusRequestTimeout && r.ProtoMajor == 1 {
		w.Header()["Connection"] = connClose
	}
	h.plain(w, status, http.StatusText(status)+"\n")
}

// plain writes a short text response and returns its status.
func (h *Handler) plain(w http.ResponseWriter, status int, body string) int {
	hdr := w.Header()
	hdr["Content-Type"] = textPlain
	hdr["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
	return status
}

var (
	textPlain = []string{"text/plain; charset=utf-8"}
	nosniff   = []string{"nosniff"}
	connClose = []string{"close"}
)

// redirect answers 308 to the HTTPS URL of r: same host (port replaced by
// HTTPSPort, or dropped), same path and query.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request) int {
	host := r.Host
	if hst, _, err := net.SplitHostPort(host); err == nil {
		host = hst
		if strings.IndexByte(host, ':') >= 0 {
			host = "[" + host + "]"
		}
	}
	if p := h.cfg.HTTPSPort; p != 0 && p != 443 {
		host += ":" + strconv.Itoa(p)
	}
	uri := r.URL.RequestURI()
	w.Header()["Location"] = []string{"https://" + host + uri}
	w.WriteHeader(http.StatusPermanentRedirect)
	return http.StatusPermanentRedirect
}

// clientIP returns the host part of a RemoteAddr ("ip:port").
func clientIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// copyBufSize is the size of ReverseProxy's body copy buffers.
const copyBufSize = 32 << 10

// bufferPool recycles ReverseProxy's copy buffers. Buffers are pooled as
// array pointers so that Put does not allocate.
type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[copyBufSize]byte); ok {
		return b[:]
	}
	return make([]byte, copyBufSize)
}

func (bp *bufferPool) Put(b []byte) {
	if cap(b) >= copyBufSize {
		bp.p.Put((*[copyBufSize]byte)(b[:copyBufSize]))
	}
}

// logWriter adapts ReverseProxy's ErrorLog to logr at V(1).
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
