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

// Session id layout (stateful mode), 41 bytes:
//
//	[0]     idVersion
//	[1:9]   issuing node id (mesh.NodeID of its name), big-endian
//	[9:25]  128 random bits: the store key
//	[25:41] HMAC-SHA256(cluster MAC key, bytes 0..24), truncated to 128 bits
//
// The MAC lets any replica reject forged or corrupted ids without a store
// lookup or a remote query; the node id tells a replica whom to ask on a miss.
const (
	idVersion = 0x01
	idLen     = 41
	idMACOff  = 25
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

func (n *Node) mintID(key store.Key) []byte {
	id := make([]byte, idLen)
	id[0] = idVersion
	binary.BigEndian.PutUint64(id[1:9], n.id)
	copy(id[9:25], key[:])
	m := n.mac(id)
	copy(id[idMACOff:], m[:])
	return id
}

// parseID checks an id's shape and MAC and returns its origin and key.
func (n *Node) parseID(id []byte) (uint64, store.Key, bool) {
	var key store.Key
	if len(id) != idLen || id[0] != idVersion {
		return 0, key, false
	}
	m := n.mac(id)
	if !hmac.Equal(m[:], id[idMACOff:]) {
		return 0, key, false
	}
	copy(key[:], id[9:25])
	return binary.BigEndian.Uint64(id[1:9]), key, true
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
	now := time.Now()
	binding := s.hb.bind(cs.ServerName)
	if cs.DidResume {
		if old, st := n.store.Get(key, now); st == store.Found && old.Binding == binding {
			// A TLS 1.2 re-wrap of the session just resumed: the cluster
			// already holds it (with its original expiry, which Go also
			// enforces from the state's creation time).
			n.m.rewraps.Add(1)
			return n.mintID(key), nil
		}
	}
	r := store.Record{Key: key, Binding: binding, Origin: n.id,
		Created: now.UnixNano(), Expires: now.Add(s.lifetime).UnixNano(), State: state}
	n.store.Put(r, now)
	if n.mesh != nil && len(state) <= wire.MaxStateSize {
		n.mesh.Insert(r)
	}
	n.m.wraps[modeStateful].Add(1)
	return n.mintID(key), nil
}

func (s *statefulHost) unwrap(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	n := s.n
	if len(identity) == 0 { // a TLS 1.2 client asking for a first ticket
		return nil, nil
	}
	origin, key, ok := n.parseID(identity)
	if !ok {
		n.m.miss(missInvalid)
		return nil, nil
	}
	r, ok := n.find(origin, key, store.KindTLSState, s.hb.bind(cs.ServerName), time.Now())
	if !ok {
		return nil, nil
	}
	ss, err := tls.ParseSessionState(r.State)
	if err != nil {
		n.m.miss(missInvalid)
		return nil, nil
	}
	n.m.hit(cs.Version)
	return ss, nil
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
