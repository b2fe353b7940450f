package sessionmesh

import (
	"crypto/tls"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

// Remote lookup budget (issue 15, finding 8). A session id names its
// issuer, and a replica that does not hold the record asks the issuer: one
// mesh round trip, up to LookupTimeout of the handshake goroutine. A
// ClientHello offers up to five PSK identities, each looked up before any
// binder is checked, so a client holding live-looking ids whose records are
// gone (evicted, revoked, or minted by a holder of the MAC key) made replicas
// query each other at will. ScopeHandshake bounds that:
//
//   - per handshake, only the first identity that needs a remote lookup is
//     looked up remotely; later ones resume only from the local store;
//   - per client address (IPv4, or the /64 of IPv6), a token bucket of
//     sourceBurst lookups refilled at one per sourceRefill is charged for
//     every remote lookup that finds nothing; an empty bucket refuses
//     remote lookups for the address. A remote lookup that finds the
//     session (replication lag, the case the lookup exists for) costs
//     nothing. The buckets are bounded (maxSources).
//
// Refused lookups count in remote_lookups_limited_total{reason} and as the
// miss reason lookup_limited: the handshake falls back to a full one.
const (
	sourceBurst  = 8
	sourceRefill = time.Second
	maxSources   = 4096
	extPSK       = 41 // pre_shared_key (RFC 8446)
	extTicket    = 35 // session_ticket (RFC 5077)
)

// Limit reasons (label values of remote_lookups_limited_total).
const (
	limitHandshake = iota // a second identity of one handshake
	limitSource           // the client address's bucket is empty
	numLimits
)

var limitNames = [numLimits]string{"handshake", "source"}

// ScopeHandshake returns the configuration one handshake should use: cfg
// itself (a configuration ConfigureTLS set up) when the handshake cannot
// make this node ask a peer (no mesh, no resumption offered), otherwise a
// clone of cfg whose UnwrapSession applies the bounds above for this
// handshake and the address of hello.Conn. The data plane calls it from
// its GetConfigForClient, with the hello of the handshake; the clone must
// serve that handshake only. It is safe for concurrent use.
func (n *Node) ScopeHandshake(cfg *tls.Config, hello *tls.ClientHelloInfo) *tls.Config {
	if n.mesh == nil || cfg == nil || cfg.UnwrapSession == nil || hello == nil ||
		!(slices.Contains(hello.Extensions, extPSK) || slices.Contains(hello.Extensions, extTicket)) {
		return cfg
	}
	sc := &handshakeScope{n: n, inner: cfg.UnwrapSession}
	if hello.Conn != nil {
		sc.src = sourceOf(hello.Conn.RemoteAddr())
	}
	c := cfg.Clone()
	c.UnwrapSession = sc.unwrap
	return c
}

// handshakeScope is the lookup budget of one handshake. Its unwrap runs on
// the handshake's goroutine only.
type handshakeScope struct {
	n      *Node
	src    netip.Prefix // zero when unknown
	inner  func([]byte, tls.ConnectionState) (*tls.SessionState, error)
	looked bool // a remote lookup was allowed in this handshake
}

func (sc *handshakeScope) unwrap(id []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	n := sc.n
	if !n.wouldAskPeer(id) {
		return sc.inner(id, cs)
	}
	switch {
	case sc.looked:
		n.m.limited[limitHandshake].Add(1)
		n.m.miss(missLimited)
		return nil, nil
	case !n.sources.allow(sc.src, time.Now()):
		n.m.limited[limitSource].Add(1)
		n.m.miss(missLimited)
		return nil, nil
	}
	sc.looked = true
	ss, err := sc.inner(id, cs)
	if ss == nil {
		n.sources.charge(sc.src, time.Now())
	}
	return ss, err
}

// wouldAskPeer reports whether resuming id would make this node ask its
// issuer: a MAC-valid, unexpired stateful id of another node that the local
// store does not hold.
func (n *Node) wouldAskPeer(id []byte) bool {
	origin, expires, key, ok := n.parseIDExpiry(id)
	if !ok || origin == n.id || !n.cfg.Now().Before(expires) {
		return false
	}
	_, st := n.store.Get(key, time.Now())
	return st == store.Missing
}

// sourceOf is the bucket key of a client address: the IPv4 address or the
// IPv6 /64 (a client is usually given a whole /64).
func sourceOf(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// sourceBuckets are the token buckets of client addresses, at most
// maxSources of them. The zero value is ready; safe for concurrent use.
type sourceBuckets struct {
	mu sync.Mutex
	m  map[netip.Prefix]*bucket // guarded by mu
}

type bucket struct {
	tokens float64
	last   time.Time
}

// refill brings b to now.
func (b *bucket) refill(now time.Time) {
	b.tokens = min(sourceBurst, b.tokens+float64(now.Sub(b.last))/float64(sourceRefill))
	b.last = now
}

// allow reports whether src has a token left (a source not seen has a full
// bucket). It takes nothing: charge does, for lookups that found nothing.
func (s *sourceBuckets) allow(src netip.Prefix, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[src]
	if b == nil {
		return true
	}
	b.refill(now)
	return b.tokens >= 1
}

// charge takes one token from src's bucket.
func (s *sourceBuckets) charge(src netip.Prefix, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[netip.Prefix]*bucket)
	}
	b := s.m[src]
	if b == nil {
		if len(s.m) >= maxSources {
			s.evict(now)
		}
		b = &bucket{tokens: sourceBurst, last: now}
		s.m[src] = b
	}
	b.refill(now)
	b.tokens = max(0, b.tokens-1)
}

// evict forgets the buckets that are full again (they mean nothing), or one
// bucket if none is: a forgotten source starts over with a full bucket,
// which bounds what eviction gives away to sourceBurst lookups.
func (s *sourceBuckets) evict(now time.Time) {
	for k, b := range s.m {
		if b.refill(now); b.tokens >= sourceBurst {
			delete(s.m, k)
		}
	}
	if len(s.m) < maxSources {
		return
	}
	for k := range s.m {
		delete(s.m, k)
		return
	}
}

// sourceCount is the number of buckets held (for tests and status).
func (s *sourceBuckets) sourceCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
