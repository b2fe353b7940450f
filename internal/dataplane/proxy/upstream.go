package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
)

// Passive health: an endpoint whose connect fails is skipped for
// ejectBase << (consecutive failures - 1), at most ejectMax.
const (
	ejectBase = time.Second
	ejectMax  = 30 * time.Second
)

// endpointHealth is the passive health of one endpoint address. It outlives
// tables: a new table that keeps the address keeps its state.
type endpointHealth struct {
	fails        atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds
}

func (e *endpointHealth) failed(now time.Time) {
	n := e.fails.Add(1)
	d := ejectMax
	if n <= 5 {
		d = min(ejectBase<<(n-1), ejectMax)
	}
	e.ejectedUntil.Store(now.Add(d).UnixNano())
}

func (e *endpointHealth) succeeded() {
	if e.fails.Load() != 0 {
		e.fails.Store(0)
		e.ejectedUntil.Store(0)
	}
}

// backendState is what the proxy keeps per *routing.Backend of one table.
type backendState struct {
	b         *routing.Backend
	scheme    string // URL scheme towards the endpoints
	transport http.RoundTripper
	health    []*endpointHealth // aligned with b.Endpoints
	rr        atomic.Uint32
	metrics   *backendMetrics
	maxBody   int64
}

// pick returns the index of the next endpoint in round-robin order that is
// not ejected; when all are ejected it returns the next one anyway (trying
// beats failing fast when the whole backend looked down for a moment).
// skip, if ≥ 0, is an index not to return when another is available.
func (bs *backendState) pick(now time.Time, skip int) int {
	n := uint32(len(bs.b.Endpoints))
	start := bs.rr.Add(1) - 1
	ns := now.UnixNano()
	fallback := -1
	for i := uint32(0); i < n; i++ {
		j := int((start + i) % n)
		if j == skip {
			continue
		}
		if bs.health[j].ejectedUntil.Load() <= ns {
			return j
		}
		if fallback < 0 {
			fallback = j
		}
	}
	if fallback >= 0 {
		return fallback
	}
	return int(start % n)
}

// tableState holds the backend states of one table; immutable once
// published.
type tableState struct {
	table    *routing.Table
	backends map[*routing.Backend]*backendState
}

// transportKey selects a shared upstream transport: connection pools are per
// protocol and per timeout pair (timeouts are transport settings).
type transportKey struct {
	proto           routing.Protocol
	connectTimeout  time.Duration
	responseTimeout time.Duration
}

// upstreams owns the shared transports and endpoint health. Its methods are
// safe for concurrent use; state is rebuilt once per table, not per request.
type upstreams struct {
	cfg     *Config
	metrics *metrics

	cur atomic.Pointer[tableState]

	mu         sync.Mutex // guards the maps below (slow path only)
	transports map[transportKey]*http.Transport
	health     map[string]*endpointHealth
	bmetrics   map[string]*backendMetrics
}

func newUpstreams(cfg *Config, m *metrics) *upstreams {
	return &upstreams{
		cfg:        cfg,
		metrics:    m,
		transports: make(map[transportKey]*http.Transport),
		health:     make(map[string]*endpointHealth),
		bmetrics:   make(map[string]*backendMetrics),
	}
}

// backend returns the state of b in table t.
func (u *upstreams) backend(t *routing.Table, b *routing.Backend) *backendState {
	ts := u.cur.Load()
	if ts == nil || ts.table != t {
		ts = u.rebuild(t)
	}
	if bs := ts.backends[b]; bs != nil {
		return bs
	}
	// Not reachable from t's HTTP routes (a caller-built backend): build
	// an uncached state.
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.newBackendStateLocked(b)
}

// rebuild computes the state of t, reusing transports, health by address and
// metric children by backend name, and drops health of vanished addresses.
func (u *upstreams) rebuild(t *routing.Table) *tableState {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ts := u.cur.Load(); ts != nil && ts.table == t {
		return ts
	}
	ts := &tableState{table: t, backends: make(map[*routing.Backend]*backendState)}
	add := func(b *routing.Backend) {
		if b != nil && ts.backends[b] == nil {
			ts.backends[b] = u.newBackendStateLocked(b)
		}
	}
	addVH := func(vh *routing.VirtualHost) {
		if vh == nil {
			return
		}
		for i := range vh.Routes {
			vh.Routes[i].EachBackend(add)
		}
	}
	for _, vh := range t.HTTP.Hosts {
		addVH(vh)
	}
	for _, vh := range t.HTTP.Wildcards {
		addVH(vh)
	}
	addVH(t.HTTP.CatchAll)
	add(t.HTTP.DefaultBackend)

	live := make(map[string]bool, len(u.health))
	for _, bs := range ts.backends {
		for _, ep := range bs.b.Endpoints {
			live[ep] = true
		}
	}
	names := make(map[string]bool, len(ts.backends))
	for _, bs := range ts.backends {
		names[bs.b.Name] = true
	}
	for addr := range u.health {
		if !live[addr] {
			delete(u.health, addr)
		}
	}
	for name := range u.bmetrics {
		if !names[name] {
			delete(u.bmetrics, name) // its series stay; only the cache goes
		}
	}
	u.cur.Store(ts)
	return ts
}

func (u *upstreams) newBackendStateLocked(b *routing.Backend) *backendState {
	key := transportKey{
		proto:           b.Protocol,
		connectTimeout:  b.ConnectTimeout,
		responseTimeout: b.ResponseTimeout,
	}
	switch key.proto {
	case "":
		key.proto = routing.ProtocolHTTP
	case routing.ProtocolGRPC:
		key.proto = routing.ProtocolH2C
	}
	if key.connectTimeout <= 0 {
		key.connectTimeout = u.cfg.ConnectTimeout
	}
	if key.responseTimeout <= 0 {
		key.responseTimeout = u.cfg.ResponseTimeout
	}
	tr := u.transports[key]
	if tr == nil {
		tr = u.newTransport(key)
		u.transports[key] = tr
	}
	bs := &backendState{
		b:         b,
		scheme:    "http",
		transport: tr,
		health:    make([]*endpointHealth, len(b.Endpoints)),
		maxBody:   b.MaxBodyBytes,
	}
	if key.proto == routing.ProtocolHTTPS {
		bs.scheme = "https"
	}
	if bs.maxBody <= 0 {
		bs.maxBody = u.cfg.MaxBodyBytes
	}
	for i, ep := range b.Endpoints {
		h := u.health[ep]
		if h == nil {
			h = &endpointHealth{}
			u.health[ep] = h
		}
		bs.health[i] = h
	}
	bm := u.bmetrics[b.Name]
	if bm == nil {
		bm = newBackendMetrics(u.metrics, b.Name)
		u.bmetrics[b.Name] = bm
	}
	bs.metrics = bm
	return bs
}

// dialError marks a failure to connect to an endpoint: nothing was sent, so
// the request may be retried elsewhere and the endpoint is ejected.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Timeout reports whether the connect timed out (keeps net.Error semantics).
func (e *dialError) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}

// newTransport builds the pooled transport for key.
//
// HTTPS backends are dialled with InsecureSkipVerify: backends inside the
// cluster are addressed by pod IP and commonly present self-signed or
// service-name certificates, as with ingress-nginx's default
// (proxy-ssl-verify off). The link is encrypted, not authenticated.
func (u *upstreams) newTransport(key transportKey) *http.Transport {
	d := &net.Dialer{Timeout: key.connectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: nil, // never honour HTTP_PROXY for cluster-internal traffic
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err: err}
			}
			return c, nil
		},
		MaxIdleConns:          u.cfg.MaxIdleConns,
		MaxIdleConnsPerHost:   u.cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: key.responseTimeout,
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   key.connectTimeout,
		DisableCompression:    true, // pass encodings through untouched
	}
	var p http.Protocols
	switch key.proto {
	case routing.ProtocolH2C:
		p.SetUnencryptedHTTP2(true)
	case routing.ProtocolHTTPS:
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see doc comment
	default:
		p.SetHTTP1(true)
	}
	tr.Protocols = &p
	return tr
}

// closeIdle closes idle upstream connections of every transport.
func (u *upstreams) closeIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, tr := range u.transports {
		tr.CloseIdleConnections()
	}
}

// roundTripper is the ReverseProxy's Transport: it sends the request to the
// endpoint Rewrite chose and, when connecting failed, ejects that endpoint
// and retries once on another for idempotent requests without a body.
type roundTripper struct{}

func (roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateFrom(req.Context())
	if st == nil || st.be == nil {
		return nil, errors.New("proxy: request without routing state")
	}
	bs := st.be
	resp, err := bs.transport.RoundTrip(req)
	if err == nil {
		bs.health[st.idx].succeeded()
		return resp, nil
	}
	var de *dialError
	if !errors.As(err, &de) {
		return nil, err
	}
	now := time.Now()
	bs.health[st.idx].failed(now)
	st.attempts++
	if !retryable(req) || len(bs.b.Endpoints) < 2 || req.Context().Err() != nil {
		return nil, err
	}
	st.idx = bs.pick(now, st.idx)
	retry := req.Clone(req.Context())
	retry.URL.Host = bs.b.Endpoints[st.idx]
	resp, err = bs.transport.RoundTrip(retry)
	if err == nil {
		bs.health[st.idx].succeeded()
		return resp, nil
	}
	if errors.As(err, &de) {
		bs.health[st.idx].failed(time.Now())
	}
	st.attempts++
	return nil, fmt.Errorf("retry on %s: %w", retry.URL.Host, err)
}

// retryable reports whether req may be sent again after a failed connect:
// idempotent method, no body, no protocol upgrade.
func retryable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	return req.Header.Get("Upgrade") == ""
}
