package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
)

// Sticky learn (routing.LearnAffinity). When a response sets the backend's
// session cookie, the proxy records
//
//	base64url(HMAC-SHA256(key, "learn" NUL backend NUL value)[:16]) → endpoint
//
// in the cluster's sticky table (Config.Sticky, a replicated clusterstate
// zone). The session value itself is never stored nor sent over the mesh
// (it is a bearer credential); clients cannot choose keys, only make the
// backend issue sessions, and the zone's memory budget bounds those (the
// soonest-expiring entries are evicted and counted).
//
// Writes are bounded per session, never per request: one when a value is
// learned (a response sets a value the table does not map to the endpoint
// that answered), one when a session's endpoint left the backend and the
// request was balanced elsewhere (relearned), and one refresh per half
// Timeout of a session in use.
//
// Replication takes milliseconds, and the client's next request may reach
// another replica sooner. The learning response therefore also sets a
// short-lived cookie of ours, LearnBridgeCookie, naming the endpoint like
// cookie affinity does (MAC'd, precomputed per endpoint): a replica whose
// table does not hold the session yet routes by it. The table wins when it
// has the session.

// LearnBridgeCookie is the cookie that carries a just-learned session's
// endpoint until the table entry has reached every replica.
const LearnBridgeCookie = "MESHGATE_LEARN"

// LearnBridgeMaxAge is the bridge cookie's Max-Age: far beyond the mesh's
// replication delay (milliseconds), short enough that the table decides
// for every session older than a minute.
const LearnBridgeMaxAge = time.Minute

// DefaultLearnTimeout is a learned session's lifetime when the backend's
// LearnAffinity sets none.
const DefaultLearnTimeout = time.Hour

// learnKeyLen is the length of a sticky table key: base64url of 16 bytes.
const learnKeyLen = 22

// StickyTable is the replicated table sticky learn records sessions in
// (Config.Sticky); *clusterstate.ZoneView implements it. Safe for
// concurrent use.
type StickyTable interface {
	// Get returns the live entry of key. key aliases a buffer the caller
	// reuses: Get must not retain it. It is on the request path and
	// should not allocate.
	Get(key string) (clusterstate.Entry, bool)
	// Put records value under key for ttl and replicates it; the table
	// owns value afterwards.
	Put(key string, value []byte, ttl time.Duration) error
}

// learnMetrics are the sticky-learn counters of one Handler.
type learnMetrics struct {
	lookups *prometheus.CounterVec
	writes  *prometheus.CounterVec
}

func newLearnMetrics() *learnMetrics {
	return &learnMetrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "sticky", Name: "lookups_total",
			Help: "Requests carrying a learned backend's session cookie, by backend and result (hit: the table's endpoint; bridge: not in the table yet, routed by the bridge cookie; gone: the endpoint left the backend; miss).",
		}, []string{"backend", "result"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "sticky", Name: "writes_total",
			Help: "Sticky table writes by backend and reason (learned, relearned, refreshed, failed).",
		}, []string{"backend", "reason"}),
	}
}

// Lookup results and write reasons, indexes of learnState's counters.
const (
	lookupHit = iota
	lookupBridge
	lookupGone
	lookupMiss
	nLookups
)

const (
	writeLearned = iota
	writeRelearned
	writeRefreshed
	writeFailed
	nWrites
)

var (
	lookupNames = [nLookups]string{"hit", "bridge", "gone", "miss"}
	writeNames  = [nWrites]string{"learned", "relearned", "refreshed", "failed"}
)

// learnState is a backend's sticky-learn state, built with its
// backendState when a table is applied.
type learnState struct {
	cookie  string
	backend string
	ttl     time.Duration
	table   StickyTable
	hashers *sync.Pool     // *learnHasher keyed with the Handler's key
	index   map[string]int // endpoint → index
	bridge  *affinityState // the bridge cookie's precomputed values
	eps     [][]byte       // endpoint bytes, the table's values
	lookups [nLookups]prometheus.Counter
	writes  [nWrites]prometheus.Counter
}

// learnHasher computes table keys without allocating: its MAC and
// buffers are reused through a sync.Pool.
type learnHasher struct {
	mac hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

func newLearnHashers(key []byte) *sync.Pool {
	return &sync.Pool{New: func() any {
		return &learnHasher{mac: hmac.New(sha256.New, key), in: make([]byte, 0, 256)}
	}}
}

// key writes the table key of session value v of backend into out.
func (lh *learnHasher) key(backend, v string, out *[learnKeyLen]byte) {
	lh.in = append(append(append(append(lh.in[:0], "learn\x00"...), backend...), 0), v...)
	lh.mac.Reset()
	lh.mac.Write(lh.in)
	sum := lh.mac.Sum(lh.sum[:0])
	base64.RawURLEncoding.Encode(out[:], sum[:16])
}

func newLearnState(key []byte, hashers *sync.Pool, table StickyTable, m *learnMetrics, b *routing.Backend) *learnState {
	if b.Learn == nil || table == nil {
		return nil
	}
	ls := &learnState{cookie: b.Learn.Cookie, backend: b.Name, ttl: b.Learn.Timeout, table: table, hashers: hashers,
		index: make(map[string]int, len(b.Endpoints)), eps: make([][]byte, len(b.Endpoints))}
	if ls.ttl <= 0 {
		ls.ttl = DefaultLearnTimeout
	}
	for i, ep := range b.Endpoints {
		ls.index[ep], ls.eps[i] = i, []byte(ep)
	}
	ls.bridge = newAffinityState(key, &routing.Backend{Name: "learn " + b.Name, Endpoints: b.Endpoints,
		Affinity: &routing.CookieAffinity{Name: LearnBridgeCookie, MaxAge: LearnBridgeMaxAge, SecureOnTLS: true}})
	for i := range ls.lookups {
		ls.lookups[i] = m.lookups.WithLabelValues(b.Name, lookupNames[i])
	}
	for i := range ls.writes {
		ls.writes[i] = m.writes.WithLabelValues(b.Name, writeNames[i])
	}
	return ls
}

// learnRequest is what the request side of an exchange leaves for its
// response side.
type learnRequest struct {
	key     [learnKeyLen]byte
	hasKey  bool  // the request carried the session cookie
	result  int   // lookup result
	idx     int   // the hit entry's endpoint index
	expires int64 // the hit entry's expiry
}

// requestCookie returns the value of the request cookie name, or "".
func requestCookie(h *exchange.Header, name string) string {
	for _, f := range h.Fields() {
		if !exchange.EqualFold(f.Name, "Cookie") {
			continue
		}
		v := f.Value
		for v != "" {
			var pair string
			pair, v, _ = strings.Cut(v, ";")
			n, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && n == name && val != "" {
				return val
			}
		}
	}
	return ""
}

// lookup returns the endpoint index the request's session is pinned to,
// or -1, and records in lr what the response side needs. It does not
// allocate.
func (ls *learnState) lookup(h *exchange.Header, lr *learnRequest, now time.Time) int {
	v := requestCookie(h, ls.cookie)
	if v == "" {
		return -1
	}
	lh := ls.hashers.Get().(*learnHasher)
	lh.key(ls.backend, v, &lr.key)
	ls.hashers.Put(lh)
	lr.hasKey = true
	if e, ok := ls.table.Get(unsafe.String(&lr.key[0], learnKeyLen)); ok {
		if i, ok := ls.index[string(e.Value)]; ok {
			lr.result, lr.idx, lr.expires = lookupHit, i, e.Expires
			ls.lookups[lookupHit].Inc()
			return i
		}
		lr.result = lookupGone
		ls.lookups[lookupGone].Inc()
		return -1
	}
	if i := ls.bridge.pinned(h, now); i >= 0 {
		lr.result = lookupBridge
		ls.lookups[lookupBridge].Inc()
		return i
	}
	lr.result = lookupMiss
	ls.lookups[lookupMiss].Inc()
	return -1
}

// responseCookie returns the value of the Set-Cookie of name in h, or ""
// (none, or one that deletes the cookie: empty, Max-Age ≤ 0).
func responseCookie(h *exchange.Header, name string) string {
	for _, f := range h.Fields() {
		if !exchange.EqualFold(f.Name, "Set-Cookie") {
			continue
		}
		pair, attrs, _ := strings.Cut(f.Value, ";")
		n, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || n != name {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"`)
		if v == "" || deletes(attrs) {
			return ""
		}
		return v
	}
	return ""
}

// deletes reports whether Set-Cookie attributes attrs carry Max-Age ≤ 0.
func deletes(attrs string) bool {
	for attrs != "" {
		var a string
		a, attrs, _ = strings.Cut(attrs, ";")
		n, v, _ := strings.Cut(strings.TrimSpace(a), "=")
		if strings.EqualFold(n, "Max-Age") {
			if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s <= 0 {
				return true
			}
		}
	}
	return false
}

// respond learns from the response head h of endpoint idx: a new session
// value is recorded (and the bridge cookie added to h); a session whose
// endpoint left is relearned on idx; a session in use is refreshed once
// its entry is past half its lifetime (neither from a 5xx response). tls
// says the request came over TLS (the bridge cookie is then Secure).
// Everything else writes nothing.
func (ls *learnState) respond(h *exchange.Header, idx, status int, lr *learnRequest, now time.Time, tls bool) {
	if v := responseCookie(h, ls.cookie); v != "" {
		var k [learnKeyLen]byte
		lh := ls.hashers.Get().(*learnHasher)
		lh.key(ls.backend, v, &k)
		ls.hashers.Put(lh)
		if e, ok := ls.table.Get(unsafe.String(&k[0], learnKeyLen)); ok && string(e.Value) == string(ls.eps[idx]) {
			if e.Expires-now.UnixNano() < int64(ls.ttl/2) {
				ls.write(string(k[:]), idx, writeRefreshed)
			}
			return
		}
		if ls.write(string(k[:]), idx, writeLearned) {
			ls.bridge.setCookie(h, idx, -1, now, tls)
		}
		return
	}
	if !lr.hasKey || status >= 500 {
		return
	}
	switch {
	case lr.result == lookupGone:
		if ls.write(string(lr.key[:]), idx, writeRelearned) {
			ls.bridge.setCookie(h, idx, -1, now, tls)
		}
	case lr.result == lookupHit && idx == lr.idx && lr.expires-now.UnixNano() < int64(ls.ttl/2):
		// Only the session's own endpoint refreshes it: a request that
		// failed over (connect refused) must not move the session.
		ls.write(string(lr.key[:]), idx, writeRefreshed)
	}
}

// write records key → endpoint idx and counts it under reason (or as
// failed); it reports whether the write applied.
func (ls *learnState) write(key string, idx, reason int) bool {
	if err := ls.table.Put(key, ls.eps[idx], ls.ttl); err != nil {
		ls.writes[writeFailed].Inc()
		return false
	}
	ls.writes[reason].Inc()
	return true
}
