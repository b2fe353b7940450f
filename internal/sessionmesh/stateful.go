package sessionmesh

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"net"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Session id layout (stateful mode), 45 bytes:
//
//	[0]     idVersion
//	[1:9]   issuing node id (mesh.NodeID of its name), big-endian
//	[9:13]  expiry, unix seconds, big-endian (the record's, rounded up)
//	[13:29] the store key
//	[29:45] HMAC-SHA256(cluster MAC key, bytes 0..28), truncated to 128 bits
//
// The MAC lets any replica reject forged or corrupted ids without a store
// lookup or a remote query; the node id tells a replica whom to ask on a
// miss. The expiry is under the MAC (the layout of internal/tls12's session
// IDs, sessionid.go), so an id whose session has expired is refused
// locally, before any lookup: a client replaying old ids cannot make one
// replica query another (issue 15, finding 8). Version 1 ids (41 bytes,
// no expiry) are refused as invalid.
const (
	idVersion = 0x02
	idLen     = 45
	idMACOff  = 29
)

// mac computes HMAC-SHA256(macKey, id[:idMACOff]) truncated to 128 bits.
// It is HMAC spelled out over stack buffers with the key pads precomputed in
// New, so it does not allocate (hmac.New and hash.Hash.Sum would).
func (n *Node) mac(id []byte) [16]byte {
	var in [64 + idMACOff]byte
	copy(in[:64], n.ipad[:])
	copy(in[64:], id[:idMACOff])
	inner := sha256.Sum256(in[:])
	var out [64 + sha256.Size]byte
	copy(out[:64], n.opad[:])
	copy(out[64:], inner[:])
	sum := sha256.Sum256(out[:])
	return [16]byte(sum[:16])
}

// mintID mints the id of the record under key that expires at expires
// (unix nanoseconds).
func (n *Node) mintID(key store.Key, expires int64) []byte {
	id := make([]byte, idLen)
	id[0] = idVersion
	binary.BigEndian.PutUint64(id[1:9], n.id)
	secs := (expires + int64(time.Second) - 1) / int64(time.Second)
	binary.BigEndian.PutUint32(id[9:13], uint32(secs))
	copy(id[13:29], key[:])
	m := n.mac(id)
	copy(id[idMACOff:], m[:])
	return id
}

// parseID checks an id's shape and MAC and returns its origin and key.
func (n *Node) parseID(id []byte) (uint64, store.Key, bool) {
	origin, _, key, ok := n.parseIDExpiry(id)
	return origin, key, ok
}

// parseIDExpiry is parseID that also returns the id's expiry.
func (n *Node) parseIDExpiry(id []byte) (origin uint64, expires time.Time, key store.Key, ok bool) {
	if len(id) != idLen || id[0] != idVersion {
		return 0, time.Time{}, key, false
	}
	m := n.mac(id)
	if !hmac.Equal(m[:], id[idMACOff:]) {
		return 0, time.Time{}, key, false
	}
	copy(key[:], id[13:29])
	return binary.BigEndian.Uint64(id[1:9]), time.Unix(int64(binary.BigEndian.Uint32(id[9:13])), 0), key, true
}

// bind returns the binding for a handshake: the host binding and the exact
// SNI name, ASCII-lowercased. It does not allocate.
func (hb *hostBinding) bind(serverName string) store.Binding {
	var buf [32 + 256]byte
	copy(buf[:32], hb[:])
	n := min(len(serverName), 255)
	buf[32] = byte(n)
	for i := 0; i < n; i++ {
		c := serverName[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[33+i] = c
	}
	return store.Binding(sha256.Sum256(buf[:33+n]))
}

// statefulHost implements the Stateful hooks for one configured host.
type statefulHost struct {
	n        *Node
	hb       hostBinding
	lifetime time.Duration
}

// sessionKey derives the store key of a session from its serialized state:
// HMAC-SHA256(cluster MAC key, label || state), truncated to 128 bits.
//
// Every new session carries fresh secrets, so its key is as unguessable as
// a random one (the MAC key never leaves the cluster). What the derivation
// adds is that the same state always gets the same key, on every replica:
// Go's TLS 1.2 server re-wraps the very session it just resumed on every
// resumed handshake, and wrap then finds the record already stored and
// skips storing and replicating it again.
func (n *Node) sessionKey(state []byte) store.Key {
	h := sha256.New()
	h.Write(n.ipad[:])
	h.Write([]byte("meshgate session key v1\x00"))
	h.Write(state)
	var inner [sha256.Size]byte
	h.Sum(inner[:0])
	h.Reset()
	h.Write(n.opad[:])
	h.Write(inner[:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return store.Key(sum[:len(store.Key{})])
}

func (s *statefulHost) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	state, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	n := s.n
	key := n.sessionKey(state)
	now := n.cfg.Now()
	binding := s.hb.bind(cs.ServerName)
	if cs.DidResume {
		if old, st := n.store.Get(key, now); st == store.Found && old.Binding == binding {
			// A TLS 1.2 re-wrap of the session just resumed: the cluster
			// already holds it (with its original expiry, which Go also
			// enforces from the state's creation time).
			n.m.rewraps.Add(1)
			return n.mintID(key, old.Expires), nil
		}
	}
	r := store.Record{Key: key, Binding: binding, Origin: n.id,
		Created: now.UnixNano(), Expires: now.Add(s.lifetime).UnixNano(), State: state}
	n.store.Put(r, now)
	if n.mesh != nil && len(state) <= wire.MaxStateSize {
		n.mesh.Insert(r)
	}
	n.m.wraps[modeStateful].Add(1)
	return n.mintID(key, r.Expires), nil
}

func (s *statefulHost) unwrap(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	n := s.n
	if len(identity) == 0 { // a TLS 1.2 client asking for a first ticket
		return nil, nil
	}
	origin, expires, key, ok := n.parseIDExpiry(identity)
	if !ok {
		n.m.miss(missInvalid)
		return nil, nil
	}
	now := n.cfg.Now()
	if !now.Before(expires) { // refused locally: no lookup, here or remote
		n.m.miss(missExpired)
		return nil, nil
	}
	r, ok := n.find(origin, key, store.KindTLSState, s.hb.bind(cs.ServerName), now)
	if !ok {
		return nil, nil
	}
	if !alive(r, s.lifetime, now) {
		n.m.miss(missExpired)
		return nil, nil
	}
	ss, err := tls.ParseSessionState(r.State)
	if err != nil {
		n.m.miss(missInvalid)
		return nil, nil
	}
	if ss.EarlyData {
		ss.EarlyData = n.takeEarlyData(r, now)
	}
	n.m.hit(cs.Version)
	return ss, nil
}

// takeEarlyData decides whether a resumption of r may carry 0-RTT early
// data, which an attacker can replay (RFC 8446 §8): only once in the
// whole cluster. The issuing replica is the one place that can decide
// that without a round trip: it alone accepts early data, and only by
// removing the record from its store in the same step (Store.Delete is
// atomic: of two concurrent resumptions one removes the record, the other
// finds a tombstone). Every other replica resumes r without early data
// (the client sends it again after the handshake, RFC 9001 §4.6.2), so a
// replayed ClientHello is never accepted with early data twice, on any
// replica, and no window depends on replication delay. The record is not
// deleted elsewhere: other replicas may still resume it in 1-RTT, which
// cannot be replayed. The client gets a new session from the connection.
func (n *Node) takeEarlyData(r store.Record, now time.Time) bool {
	ok := r.Origin == n.id && n.store.Delete(r.Key, r.Expires, now)
	if ok {
		n.m.early[1].Add(1)
	} else {
		n.m.early[0].Add(1)
	}
	return ok
}

// alive reports whether a record is within lifetime of its creation: the
// host's lifetime now, which may be shorter than when the record was
// stored (its Expires is the lifetime at issue).
func alive(r store.Record, lifetime time.Duration, now time.Time) bool {
	return now.UnixNano()-r.Created < int64(lifetime)
}

// find returns the live record of kind under key bound to binding: from
// the local store or, on a local miss, from its issuing node (origin).
// Every failure is counted as a miss by reason and reported as !ok.
func (n *Node) find(origin uint64, key store.Key, kind store.Kind, binding store.Binding, now time.Time) (store.Record, bool) {
	r, miss := n.lookup(origin, key, now)
	switch {
	case miss != missNone:
	case r.Kind != kind:
		miss = missInvalid
	case r.Binding != binding:
		miss = missBinding
	}
	if miss != missNone {
		n.m.miss(miss)
		return r, false
	}
	return r, true
}

// lookup resolves key in the local store and, on a miss there, at the
// issuing peer. It returns the record and missNone, or the miss reason to
// count (the session layer's own reasons, not the store's statuses).
func (n *Node) lookup(origin uint64, key store.Key, now time.Time) (store.Record, int) {
	r, st := n.store.Get(key, now)
	if st == store.Missing && origin != n.id && n.mesh != nil {
		return n.remoteLookup(origin, key, now)
	}
	return r, missOf(st)
}

// missOf maps a store status to a miss reason (missNone for Found).
func missOf(st store.Status) int {
	switch st {
	case store.Found:
		return missNone
	case store.Expired:
		return missExpired
	case store.Revoked:
		return missRevoked
	}
	return missUnknown
}

// remoteLookup asks the issuing node for key within LookupTimeout and
// keeps a found record locally. An issuer that is not online is a plain
// unknown id; one that was asked and gave no record in time is a remote
// miss.
func (n *Node) remoteLookup(origin uint64, key store.Key, now time.Time) (store.Record, int) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LookupTimeout)
	defer cancel()
	r, found, err := n.mesh.Lookup(ctx, origin, key)
	n.m.remoteLookups.Add(1)
	if found && !n.checkAnswer(&r, origin, key, now) {
		found, r = false, store.Record{}
	}
	if !found {
		// Replication may have delivered it while we waited.
		if lr, st := n.store.Get(key, time.Now()); st != store.Missing {
			return lr, missOf(st)
		}
		if err != nil && ctx.Err() == nil { // issuer not online: a plain miss
			return store.Record{}, missUnknown
		}
		return store.Record{}, missRemote
	}
	if r.Expires <= now.UnixNano() {
		return store.Record{}, missExpired
	}
	n.m.remoteHits.Add(1)
	n.store.Put(r, now)
	return r, missNone
}

// listenIPs returns the IPs of the given host:port addresses that name a
// specific IP, for the node certificate's SANs.
func listenIPs(addrs ...string) []net.IP {
	var ips []net.IP
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			ips = append(ips, ip)
		}
	}
	return ips
}
