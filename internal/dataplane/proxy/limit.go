package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dchest/siphash"
	"github.com/go-logr/logr"
	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/prometheus/client_golang/prometheus"
)

// The request-limit stage (routing.RequestLimit, the meshgate.io/limit-*
// annotations). Its state is built when a table is applied (limitStage.build,
// one limitState per RequestLimit of the table) and read by requests
// through the tableState, so a route and its limit always come from the
// same table. Rates are decided by the cluster-wide ratelimit.Limiter the
// replica's mesh node runs; the concurrency limit (Connections) is counted
// here, per replica.

// limitStage owns what outlives one table: the limiter and the concurrency
// counters by limit name (requests in flight hold the counter they took
// while a newer table is applied).
type limitStage struct {
	limiter *ratelimit.Limiter // nil: limits are not enforced
	log     logr.Logger

	mu    sync.Mutex // guards named and bound; apply only
	named map[string]*limitCounters
	bound map[string]bool // the limiter's limits the table in force uses

	cur atomic.Pointer[limitSet] // the set of the table in force, for metrics
}

// limitSet is the limit state of one table, by the table's RequestLimit.
type limitSet map[*routing.RequestLimit]*limitState

// limitState is one RequestLimit, bound to its limiter handles.
type limitState struct {
	spec  *routing.RequestLimit
	rates []*ratelimit.Limit // rps and/or rpm; empty: none
	conns *connLimit         // nil: no concurrency limit
	*limitCounters
}

// limitCounters are what a limit name keeps across tables: its counters
// and its concurrency counts.
type limitCounters struct {
	allowed  atomic.Int64    // requests from allow-listed addresses
	rejected [2]atomic.Int64 // by reason: rate, connections
	conns    *connLimit      // made on the first table with Connections
}

// connLimit counts one limit's requests in flight per client key.
type connLimit struct {
	max      atomic.Uint32
	k0, k1   uint64
	mu       sync.Mutex
	inFlight map[uint64]uint32 // keyed hash → requests in flight; no zero entries
}

func newLimitStage(l *ratelimit.Limiter, log logr.Logger) *limitStage {
	return &limitStage{limiter: l, log: log, named: map[string]*limitCounters{}, bound: map[string]bool{}}
}

// build returns the limit state of t's Ingress routes (nil when t has no
// limits or the stage has no limiter) and makes it the set the metrics
// report. Called from apply, one table at a time.
func (s *limitStage) build(t *routing.Table) limitSet {
	set := limitSet{}
	eachRoute(t, func(rt *routing.Route) {
		if rt.Limit != nil && set[rt.Limit] == nil && s.limiter != nil {
			set[rt.Limit] = s.bind(rt.Limit)
		}
	})
	// Prune what the new table no longer has: memory stays bounded by the
	// configured limits however often Ingresses change. The limiter's keys
	// of a removed rate go at once (counted, meshgate_ratelimit_removed_total).
	s.mu.Lock()
	for name := range s.named {
		if !set.has(name) {
			delete(s.named, name) // requests in flight keep their slot until they finish
		}
	}
	bound := map[string]bool{}
	for _, ls := range set {
		for _, lim := range ls.rates {
			bound[lim.Name()] = true
		}
	}
	for name := range s.bound {
		if !bound[name] {
			s.limiter.Remove(name)
		}
	}
	s.bound = bound
	s.mu.Unlock()
	s.cur.Store(&set)
	if len(set) == 0 {
		return nil
	}
	return set
}

func (set limitSet) has(name string) bool {
	for rl := range set {
		if rl.Name == name {
			return true
		}
	}
	return false
}

// bind makes the limiter handles of rl. Two tables' RequestLimits of one
// name share the limiter's counts: Limit updates a known name's rate.
func (s *limitStage) bind(rl *routing.RequestLimit) *limitState {
	ls := &limitState{spec: rl}
	m := time.Duration(max(rl.BurstMultiplier, 1))
	for _, r := range []struct {
		suffix string
		rate   uint32
		unit   time.Duration
	}{{"#rps", rl.RPS, time.Second}, {"#rpm", rl.RPM, time.Minute}} {
		if r.rate == 0 {
			continue
		}
		lim, err := s.limiter.Limit(ratelimit.Spec{Name: rl.Name + r.suffix, Rate: r.rate * uint32(m), Window: m * r.unit})
		if err != nil {
			s.log.Error(err, "request limit not enforced", "limit", rl.Name+r.suffix)
			continue
		}
		ls.rates = append(ls.rates, lim)
	}
	s.mu.Lock()
	lc := s.named[rl.Name]
	if lc == nil {
		lc = &limitCounters{}
		s.named[rl.Name] = lc
	}
	if rl.Connections > 0 && lc.conns == nil {
		var k [16]byte
		rand.Read(k[:])
		lc.conns = &connLimit{k0: binary.LittleEndian.Uint64(k[:]), k1: binary.LittleEndian.Uint64(k[8:]), inFlight: map[uint64]uint32{}}
	}
	s.mu.Unlock()
	ls.limitCounters = lc
	if rl.Connections > 0 {
		lc.conns.max.Store(rl.Connections)
		ls.conns = lc.conns
	}
	return ls
}

// eachRoute calls f with every route of t's own HTTP virtual hosts (the
// Ingress ones; frontends are Gateways, which carry no limits).
func eachRoute(t *routing.Table, f func(*routing.Route)) {
	vhs := func(m map[string]*routing.VirtualHost) {
		for _, vh := range m {
			for i := range vh.Routes {
				f(&vh.Routes[i])
			}
		}
	}
	vhs(t.HTTP.Hosts)
	vhs(t.HTTP.Wildcards)
	vhs(t.HTTP.Suffixes)
	if vh := t.HTTP.CatchAll; vh != nil {
		for i := range vh.Routes {
			f(&vh.Routes[i])
		}
	}
}

// limitKey is a request's client key: the value of the limit's header when
// the request has one, else the client address as 16 bytes and a NUL
// (which no header value contains, so the two never collide).
type limitKey struct {
	addr [17]byte
	hdr  string
}

func (k *limitKey) bytes() []byte {
	if k.hdr != "" {
		return unsafeBytes(k.hdr)
	}
	return k.addr[:]
}

// Rejection reasons (limitState.rejected).
const (
	rejectRate = iota
	rejectConns
)

// limited runs the limit stage for a request of a route limited by rl. It
// answers 429 and returns true when a limit rejects it; otherwise the
// request is admitted (counted in every rate) and, under a concurrency
// limit, holds a slot until releaseLimit.
func (x *exchangeState) limited(ts *tableState, rl *routing.RequestLimit) bool {
	ls := ts.limits[rl]
	if ls == nil {
		return false // no limiter (Config.Limiter nil) or a caller-built route
	}
	r := x.r
	addr := r.RemoteAddr.Addr().Unmap()
	for _, p := range rl.Allow {
		if p.Contains(addr) {
			ls.allowed.Add(1)
			return false
		}
	}
	var k limitKey
	if rl.Header != "" {
		k.hdr = r.Header.Value(rl.Header)
	}
	if k.hdr == "" {
		a16 := addr.As16()
		copy(k.addr[:], a16[:])
	}
	key := k.bytes()
	for _, lim := range ls.rates {
		if d := lim.Allow(key); !d.OK {
			ls.rejected[rejectRate].Add(1)
			x.tooMany(d.RetryAfter)
			return true
		}
	}
	if c := ls.conns; c != nil {
		h := siphash.Hash(c.k0, c.k1, key)
		if !c.acquire(h) {
			ls.rejected[rejectConns].Add(1)
			x.tooMany(time.Second)
			return true
		}
		x.connSlot, x.connKey = c, h
	}
	return false
}

// releaseLimit gives back the concurrency slot the exchange holds.
func (x *exchangeState) releaseLimit() {
	if x.connSlot != nil {
		x.connSlot.release(x.connKey)
		x.connSlot = nil
	}
}

func (c *connLimit) acquire(h uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.inFlight[h]
	if n >= c.max.Load() {
		return false
	}
	c.inFlight[h] = n + 1
	return true
}

func (c *connLimit) release(h uint64) {
	c.mu.Lock()
	if n := c.inFlight[h]; n <= 1 {
		delete(c.inFlight, h)
	} else {
		c.inFlight[h] = n - 1
	}
	c.mu.Unlock()
}

// tooMany answers 429 Too Many Requests with Retry-After in whole seconds
// (RFC 6585 §4); a gRPC call gets the gRPC equivalent.
func (x *exchangeState) tooMany(after time.Duration) {
	if isGRPC(x.r) {
		x.plain(429, "too many requests\n")
		return
	}
	x.out.Reset()
	x.out.Add("Content-Type", "text/plain; charset=utf-8")
	x.out.Add("X-Content-Type-Options", "nosniff")
	x.out.Add("Retry-After", strconv.FormatInt(int64(max(after/time.Second, 1)), 10))
	x.respond(429, "too many requests\n")
}

var (
	descLimitAllowed = prometheus.NewDesc("meshgate_request_limit_allowlisted_total",
		"Requests of a limited route from an address of the limit's allow list (never limited), by limit.", []string{"limit"}, nil)
	descLimitRejected = prometheus.NewDesc("meshgate_request_limit_rejected_total",
		"Requests of a limited route answered 429, by limit and reason (rate: a cluster-wide rate, connections: the per-replica concurrency limit).",
		[]string{"limit", "reason"}, nil)
	descLimitInFlight = prometheus.NewDesc("meshgate_request_limit_clients_in_flight",
		"Clients with a request in flight on this replica under a concurrency limit, by limit.", []string{"limit"}, nil)
)

// Describe implements prometheus.Collector.
func (s *limitStage) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLimitAllowed
	ch <- descLimitRejected
	ch <- descLimitInFlight
}

// Collect implements prometheus.Collector: the limits of the table in
// force (a removed limit's series go with it). The admitted and rejected
// counts of each rate are the limiter's (meshgate_ratelimit_requests_total).
func (s *limitStage) Collect(ch chan<- prometheus.Metric) {
	p := s.cur.Load()
	if p == nil {
		return
	}
	for _, ls := range *p {
		n := ls.spec.Name
		ch <- prometheus.MustNewConstMetric(descLimitAllowed, prometheus.CounterValue, float64(ls.allowed.Load()), n)
		ch <- prometheus.MustNewConstMetric(descLimitRejected, prometheus.CounterValue, float64(ls.rejected[rejectRate].Load()), n, "rate")
		ch <- prometheus.MustNewConstMetric(descLimitRejected, prometheus.CounterValue, float64(ls.rejected[rejectConns].Load()), n, "connections")
		if c := ls.conns; c != nil {
			c.mu.Lock()
			k := len(c.inFlight)
			c.mu.Unlock()
			ch <- prometheus.MustNewConstMetric(descLimitInFlight, prometheus.GaugeValue, float64(k), n)
		}
	}
}
