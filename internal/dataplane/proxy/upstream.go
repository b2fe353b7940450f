package proxy

import (
	"context"
	"crypto/tls"
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
	b *routing.Backend
	// pools, aligned with b.Endpoints, are the HTTP/1.1 connection pools
	// of a plain-HTTP backend; nil for the other protocols, which go
	// through transport.
	pools     []*endpointPool
	transport http.RoundTripper
	scheme    string // URL scheme of the transport's requests
	health    []*endpointHealth
	rr        atomic.Uint32
	metrics   *backendMetrics
	maxBody   int64
	affinity  *affinityState // nil without cookie affinity
	learn     *learnState    // nil without sticky learn (or without Config.Sticky)

	connectTimeout, responseTimeout time.Duration
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
	limits   limitSet // the request-limit stage's state (limit.go); nil: no limits
}

// transportKey selects a shared net/http transport (h2c, gRPC and HTTPS
// backends): connection pools are per protocol and per timeout pair
// (timeouts are transport settings).
type transportKey struct {
	proto           routing.Protocol
	connectTimeout  time.Duration
	responseTimeout time.Duration
	tlsKey          string // routing.UpstreamTLS.Key; "" for none
}

// upstreams owns the connection pools, shared transports and endpoint
// health. Its methods are safe for concurrent use; state is built once per
// table, when the table is applied, never per request.
type upstreams struct {
	cfg     *Config
	metrics *metrics
	pools   *poolSet
	// affinityKey keys affinity cookies (Config.AffinityKey or random).
	affinityKey []byte
	// limits is the request-limit stage (limit.go).
	limits *limitStage
	// hashers compute sticky learn's table keys (keyed with affinityKey).
	hashers *sync.Pool

	cur atomic.Pointer[tableState]

	mu         sync.Mutex // guards the maps below (slow path only)
	transports map[transportKey]*http.Transport
	health     map[string]*endpointHealth
	bmetrics   map[string]*backendMetrics
}

func newUpstreams(cfg *Config, m *metrics) *upstreams {
	key := newAffinityKey(cfg.AffinityKey)
	return &upstreams{
		cfg:         cfg,
		metrics:     m,
		pools:       newPoolSet(cfg.MaxIdleConnsPerHost, cfg.MaxIdleConns, cfg.IdleConnTimeout),
		transports:  make(map[transportKey]*http.Transport),
		health:      make(map[string]*endpointHealth),
		bmetrics:    make(map[string]*backendMetrics),
		affinityKey: key,
		hashers:     newLearnHashers(key),
		limits:      newLimitStage(cfg.Limiter, cfg.Log.WithName("limits")),
	}
}

// backend returns the state of b in ts (nil ts: none).
func (u *upstreams) backend(ts *tableState, b *routing.Backend) *backendState {
	if ts != nil {
		if bs := ts.backends[b]; bs != nil {
			return bs
		}
	}
	// Not reachable from the table's HTTP routes (a caller-built
	// backend): build an uncached state.
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.newBackendStateLocked(b)
}

// tableBackends calls add with every backend the HTTP routes of t and of
// its frontends can send a request to: route backends, weighted backends
// and mirrors.
func tableBackends(t *routing.Table, add func(*routing.Backend)) {
	for _, ft := range t.Frontends {
		tableBackends(ft, add)
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
	for _, vh := range t.HTTP.Suffixes {
		addVH(vh)
	}
	addVH(t.HTTP.CatchAll)
	add(t.HTTP.DefaultBackend)
}

// apply computes the state of t, reusing pools and health by address,
// transports, and metric children by backend name, drops the state of
// vanished addresses, and publishes it. A nil t publishes nothing.
func (u *upstreams) apply(t *routing.Table) {
	if t == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	ts := &tableState{table: t, backends: make(map[*routing.Backend]*backendState), limits: u.limits.build(t)}
	tableBackends(t, func(b *routing.Backend) {
		if b != nil && ts.backends[b] == nil {
			ts.backends[b] = u.newBackendStateLocked(b)
		}
	})
	live := make(map[string]bool, len(u.health))
	names := make(map[string]bool, len(ts.backends))
	for _, bs := range ts.backends {
		for _, ep := range bs.b.Endpoints {
			live[ep] = true
		}
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
	u.pools.forget(live)
	u.cur.Store(ts)
}

func (u *upstreams) newBackendStateLocked(b *routing.Backend) *backendState {
	bs := &backendState{
		b:               b,
		scheme:          "http",
		health:          make([]*endpointHealth, len(b.Endpoints)),
		maxBody:         b.MaxBodyBytes,
		connectTimeout:  b.ConnectTimeout,
		responseTimeout: b.ResponseTimeout,
		affinity:        newAffinityState(u.affinityKey, b),
		learn:           newLearnState(u.affinityKey, u.hashers, u.cfg.Sticky, u.metrics.learn, b),
	}
	if bs.maxBody <= 0 {
		bs.maxBody = u.cfg.MaxBodyBytes
	}
	if bs.connectTimeout <= 0 {
		bs.connectTimeout = u.cfg.ConnectTimeout
	}
	if bs.responseTimeout <= 0 {
		bs.responseTimeout = u.cfg.ResponseTimeout
	}
	proto := b.Protocol
	switch proto {
	case "":
		proto = routing.ProtocolHTTP
	case routing.ProtocolGRPC:
		proto = routing.ProtocolH2C
	}
	if b.TLS != nil {
		proto = routing.ProtocolHTTPS // a BackendTLSPolicy: verified TLS
	}
	if proto == routing.ProtocolHTTP {
		bs.pools = make([]*endpointPool, len(b.Endpoints))
		for i, ep := range b.Endpoints {
			bs.pools[i] = u.pools.endpoint(ep)
		}
	} else {
		key := transportKey{proto: proto, connectTimeout: bs.connectTimeout, responseTimeout: bs.responseTimeout}
		if b.TLS != nil {
			key.tlsKey = b.TLS.Key
		}
		tr := u.transports[key]
		if tr == nil {
			tr = u.newTransport(key, b.TLS)
			u.transports[key] = tr
		}
		bs.transport = tr
		if proto == routing.ProtocolHTTPS {
			bs.scheme = "https"
		}
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

// newTransport builds the pooled net/http transport for key: h2c (and
// gRPC) and HTTPS backends, which speak HTTP/2. Plain-HTTP backends use
// the HTTP/1.1 pools instead.
//
// HTTPS backends without a BackendTLSPolicy (up nil) are dialled with
// InsecureSkipVerify: backends inside the cluster are addressed by pod IP
// and commonly present self-signed or service-name certificates, as with
// ingress-nginx's default (proxy-ssl-verify off). The link is encrypted,
// not authenticated. With up, the server is verified (see upstreamTLS).
func (u *upstreams) newTransport(key transportKey, up *routing.UpstreamTLS) *http.Transport {
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
		IdleConnTimeout:       u.cfg.IdleConnTimeout,
		ResponseHeaderTimeout: key.responseTimeout,
		ExpectContinueTimeout: expectContinueTimeout,
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
		if up != nil {
			tr.TLSClientConfig = upstreamTLS(up)
		}
	}
	tr.Protocols = &p
	return tr
}

// closeIdle closes idle upstream connections of every pool and transport.
func (u *upstreams) closeIdle() {
	u.pools.closeAll()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, tr := range u.transports {
		tr.CloseIdleConnections()
	}
}
