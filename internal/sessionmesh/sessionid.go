package sessionmesh

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// TLS 1.2 session IDs (internal/tls12's ticketless path) are at most 32
// bytes on the wire (RFC 5246 section 7.4.1.2), so they have their own
// layout:
//
//	[0]      sidVersion
//	[1:9]    issuing node id (mesh.NodeID of its name), big-endian
//	[9:13]   expiry, unix seconds, big-endian
//	[13:24]  88 random bits
//	[24:32]  HMAC-SHA256(cluster MAC key, sidLabel || bytes 0..23), first 64 bits
//
// The store key is bytes 16..31 of the same HMAC, which never appear on
// the wire: every replica derives it from the id. The MAC (64 bits,
// checked in constant time) rejects forged and corrupted ids before any
// lookup, so a client cannot make one replica query another with ids of
// its choosing, nor extend an id's expiry, which is checked before the
// store is. Session IDs travel in clear text in both hellos; knowing one
// gives nothing, since resuming needs the master secret (Finished).
const (
	sidVersion = 0x21
	sidLen     = 32
	sidMACOff  = 24
	sidLabel   = "meshgate tls12 session id v1\x00"
)

// SessionIDCache stores one host's TLS 1.2 session-ID sessions in the
// cluster store. It implements internal/tls12's SessionCache and is safe
// for concurrent use.
type SessionIDCache struct {
	n        *Node
	hb       hostBinding
	lifetime time.Duration
}

// SessionIDCache returns the session-ID cache of host. Sessions it stores
// are records of kind store.KindTLS12Session, replicated and revoked
// like stateful tickets. Every session mode but Off issues them (a
// ticket-keys host cannot give a ticketless client a ticket); for Off it
// returns nil, and the data plane then leaves the host's ticketless clients
// to crypto/tls (full handshakes), as for every other client.
func (n *Node) SessionIDCache(h Host) *SessionIDCache {
	if h.Mode == Off {
		return nil
	}
	lifetime := h.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	n.noteLifetime(lifetime)
	return &SessionIDCache{n: n, hb: newHostBinding(h), lifetime: lifetime}
}

// sidMAC returns HMAC-SHA256(macKey, sidLabel || id[:sidMACOff]).
func (n *Node) sidMAC(id []byte) [sha256.Size]byte {
	var in [64 + len(sidLabel) + sidMACOff]byte
	copy(in[:64], n.ipad[:])
	copy(in[64:], sidLabel)
	copy(in[64+len(sidLabel):], id[:sidMACOff])
	inner := sha256.Sum256(in[:])
	var out [64 + sha256.Size]byte
	copy(out[:64], n.opad[:])
	copy(out[64:], inner[:])
	return sha256.Sum256(out[:])
}

// parseSessionID checks an id's shape and MAC and returns its origin,
// expiry and store key.
func (n *Node) parseSessionID(id []byte) (origin uint64, expires time.Time, key store.Key, ok bool) {
	if len(id) != sidLen || id[0] != sidVersion {
		return 0, time.Time{}, key, false
	}
	m := n.sidMAC(id)
	if !hmac.Equal(m[:sidLen-sidMACOff], id[sidMACOff:]) {
		return 0, time.Time{}, key, false
	}
	copy(key[:], m[16:32])
	return binary.BigEndian.Uint64(id[1:9]), time.Unix(int64(binary.BigEndian.Uint32(id[9:13])), 0), key, true
}

// NewSessionID mints the id of a new session that expires one lifetime
// from now.
func (c *SessionIDCache) NewSessionID(string) []byte {
	id := make([]byte, sidLen)
	id[0] = sidVersion
	binary.BigEndian.PutUint64(id[1:9], c.n.id)
	binary.BigEndian.PutUint32(id[9:13], uint32(c.n.cfg.Now().Add(c.lifetime).Unix()))
	_, _ = rand.Read(id[13:sidMACOff])
	m := c.n.sidMAC(id)
	copy(id[sidMACOff:], m[:sidLen-sidMACOff])
	return id
}

// Put stores a completed session under id, bound to serverName, and
// replicates it to every peer.
func (c *SessionIDCache) Put(id []byte, serverName string, state []byte) {
	n := c.n
	origin, expires, key, ok := n.parseSessionID(id)
	if !ok || origin != n.id {
		return
	}
	now := n.cfg.Now()
	// The id goes first: it proves the record's key, origin and expiry to
	// the peers (checkRecord).
	rs := make([]byte, 0, sidLen+len(state))
	rs = append(append(rs, id...), state...)
	r := store.Record{Key: key, Kind: store.KindTLS12Session, Binding: c.hb.bind(serverName), Origin: n.id,
		Created: now.UnixNano(), Expires: expires.UnixNano(), State: rs}
	if !n.store.Put(r, now) {
		return
	}
	if n.mesh != nil && len(state) <= wire.MaxStateSize {
		n.mesh.Insert(r)
	}
	n.m.wraps[modeSessionID].Add(1)
}

// Get returns the state of the session id names for serverName, or nil:
// forged or malformed ids, expired ids (checked from the id before any
// lookup), unknown, revoked and other-binding sessions are misses, counted
// by reason. On a local miss the issuer is asked, as for stateful tickets,
// within client's remote-lookup budget (budget.go: a session-ID hello
// carries one id, so the per-handshake bound holds by itself; the
// per-address bucket is charged by lookups that find nothing).
func (c *SessionIDCache) Get(id []byte, serverName string, client net.Addr) []byte {
	n := c.n
	origin, expires, key, ok := n.parseSessionID(id)
	if !ok {
		if len(id) > 0 {
			n.m.miss(missInvalid)
		}
		return nil
	}
	now := n.cfg.Now()
	if !now.Before(expires) {
		n.m.miss(missExpired)
		return nil
	}
	var src netip.Prefix
	remote := false
	if n.mesh != nil && origin != n.id {
		if _, st := n.store.Get(key, time.Now()); st == store.Missing {
			if client != nil {
				src = sourceOf(client)
			}
			if !n.sources.allow(src, time.Now()) {
				n.m.limited[limitSource].Add(1)
				n.m.miss(missLimited)
				return nil
			}
			remote = true
		}
	}
	r, ok := n.find(origin, key, store.KindTLS12Session, c.hb.bind(serverName), now)
	if !ok {
		if remote {
			n.sources.charge(src, time.Now())
		}
		return nil
	}
	if !alive(r, c.lifetime, now) {
		n.m.miss(missExpired)
		return nil
	}
	n.m.sessionIDHits.Add(1)
	return r.State[sidLen:] // checkRecord or Put made sure it holds the id
}
