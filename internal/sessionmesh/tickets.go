package sessionmesh

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// TicketKeys mode. Tickets are sealed by this package (not by crypto/tls's
// own ticket code) through WrapSession/UnwrapSession, so one key ring
// serves every tls.Config ever configured without tracking configs:
//
//	[0]      ticketVersion
//	[1:9]    key id (first 8 bytes of SHA-256 of the key)
//	[9:21]   AES-GCM nonce
//	[21:]    AES-256-GCM( issue time, unix nanoseconds (8 bytes) || SessionState.Bytes() )
//	         with the handshake's binding as additional data
//
// The binding as AAD makes a ticket from another virtual host fail to open.
// The issue time, not an expiry, is sealed: a ticket lives for its host's
// lifetime at resumption, so shortening a policy's lifetime ends older
// tickets at once (version 0x02 sealed the expiry at issue).
const (
	ticketVersion = 0x03
	ticketHdr     = 1 + 8 + 12
	maxRingKeys   = 6
)

// ringKey is one ticket key with its cipher.
type ringKey struct {
	wire.TicketKey
	id   uint64
	aead cipher.AEAD
}

// ticketRing holds the cluster's ticket keys. Readers load the immutable
// ring snapshot without locks; writers serialize on mu.
type ticketRing struct {
	self   string
	mu     sync.Mutex
	ring   atomic.Pointer[ringState]
	offers map[string][]wire.TicketKey // guarded by mu; see merge
}

type ringState struct {
	keys   []*ringKey // newest first, at most maxRingKeys
	active *ringKey
	leader string
}

func newTicketRing(self string) *ticketRing {
	t := &ticketRing{self: self, offers: make(map[string][]wire.TicketKey)}
	t.ring.Store(&ringState{leader: self})
	return t
}

func newRingKey(k wire.TicketKey) *ringKey {
	block, err := aes.NewCipher(k.Secret[:])
	if err != nil {
		panic(err) // 32-byte key: cannot fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(k.Secret[:])
	return &ringKey{TicketKey: k, id: binary.BigEndian.Uint64(sum[:8]), aead: aead}
}

// rebuild publishes a new state from keys and the leader name. Keys the
// leader generated come first (newest first), then the others by age, and
// the ring keeps maxRingKeys of them; the active key is the first one.
func (t *ticketRing) rebuild(keys []*ringKey, leader string) *ringState {
	slices.SortFunc(keys, func(a, b *ringKey) int {
		al, bl := a.Generator == leader, b.Generator == leader
		if al != bl {
			if al {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.Created, a.Created)
	})
	keys = slices.CompactFunc(keys, func(a, b *ringKey) bool { return a.id == b.id })
	if len(keys) > maxRingKeys {
		keys = keys[:maxRingKeys]
	}
	st := &ringState{keys: keys, leader: leader}
	if len(keys) > 0 {
		st.active = keys[0]
	}
	t.ring.Store(st)
	return st
}

// Ticket keys from peers. A ticket key decides who can read every ticket
// sealed under it, so the ring takes keys from one sender only: the node
// it currently sees as leader, and of those only the keys that leader
// generated itself (Generator is the name the sender authenticated as, the
// CN of its mesh certificate) and created no later than now + maxKeySkew.
// A far-future Created would make the key the newest one for good (the
// ring orders by Created, and a leader rotates only when now − Created of
// its newest key reaches the interval): one such frame froze rotation
// cluster-wide. Keys re-shared by a non-generator are refused for the same
// reason: they would let a key outlive its sender.
//
// Keys from a peer that does not lead (yet) are kept as its offer, the
// latest ring it sent, and merged when it becomes the leader: a node often
// hears from its future leader before its own outbound connection to it
// is up and the leader rule picks it.
const (
	// maxKeySkew is how far ahead of this node's clock a key's Created
	// may be (clock skew between replicas, NTP-synchronized).
	maxKeySkew = time.Minute
	// maxOffers bounds the peers whose offers are kept.
	maxOffers = 64
)

// Ticket key violations (label values of peer_violations_total).
const (
	violKeyGenerator = "ticket_key_not_generator" // Generator is not the sender
	violKeyFuture    = "ticket_key_future"        // Created beyond now + maxKeySkew
)

// merge takes the keys peer from sent, under the rules above, and returns
// the violation reason of every key it refused as malformed (keys from a
// peer that does not lead are not violations: they are kept as its offer).
func (t *ticketRing) merge(from string, in []wire.TicketKey, now time.Time) []string {
	var viol []string
	var own []wire.TicketKey
	limit := now.Add(maxKeySkew).UnixNano()
	for _, k := range in {
		switch {
		case k.Generator != from:
			viol = append(viol, violKeyGenerator)
		case k.Created > limit:
			viol = append(viol, violKeyFuture)
		default:
			own = append(own, k)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.offers[from]; !ok && len(t.offers) >= maxOffers {
		for name := range t.offers { // forget one: it sends again on its next rotation or connect
			delete(t.offers, name)
			break
		}
	}
	t.offers[from] = own
	cur := t.ring.Load()
	if from == cur.leader && len(own) > 0 {
		t.rebuild(t.withKeys(cur.keys, own), cur.leader)
	}
	return viol
}

// withKeys returns a copy of keys with in appended (as ring keys).
func (*ticketRing) withKeys(keys []*ringKey, in []wire.TicketKey) []*ringKey {
	out := slices.Clone(keys)
	for _, k := range in {
		out = append(out, newRingKey(k))
	}
	return out
}

// shared returns the keys to send to peers: those this node generated
// (peers take no others).
func (t *ticketRing) shared() []wire.TicketKey {
	st := t.ring.Load()
	out := make([]wire.TicketKey, 0, len(st.keys))
	for _, k := range st.keys {
		if k.Generator == t.self {
			out = append(out, k.TicketKey)
		}
	}
	return out
}

// tick updates the leader and, if this node leads and its newest own key is
// older than rotation (or missing), generates a key. It returns the keys to
// broadcast, or nil.
func (t *ticketRing) tick(leader string, rotation time.Duration, now time.Time) []wire.TicketKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.ring.Load()
	keys := slices.Clone(cur.keys)
	var own *ringKey
	for _, k := range keys {
		if k.Generator == t.self {
			own = k
			break
		}
	}
	// A node generates when it leads and its own key is missing, too old,
	// or it has just taken over from another leader.
	need := leader == t.self && (own == nil || cur.leader != t.self ||
		now.Sub(time.Unix(0, own.Created)) >= rotation)
	if !need && len(keys) > 0 {
		if leader != cur.leader {
			// A new leader (not this node): its keys come from its offer.
			t.rebuild(t.withKeys(keys, t.offers[leader]), leader)
		}
		return nil
	}
	// Leader due for rotation, or a follower without any key yet: the latter
	// gets a provisional local key, superseded once the leader's arrives.
	k := wire.TicketKey{Created: now.UnixNano(), Generator: t.self}
	rand.Read(k.Secret[:])
	keys = append(keys, newRingKey(k))
	if leader != t.self && leader != cur.leader {
		keys = t.withKeys(keys, t.offers[leader])
	}
	t.rebuild(keys, leader)
	if leader == t.self {
		return t.shared()
	}
	return nil
}

// noteRotation lowers the effective rotation interval to d if shorter.
func (n *Node) noteRotation(d time.Duration) {
	if d <= 0 {
		return
	}
	for {
		cur := n.rotation.Load()
		if int64(d) >= cur || n.rotation.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// leader is the lowest node name among this node and its online peers.
func (n *Node) leader() string {
	l := n.cfg.NodeName
	if n.mesh != nil {
		for _, p := range n.mesh.OnlineNames() {
			if p < l {
				l = p
			}
		}
	}
	return l
}

// rotateLoop re-evaluates leadership and key age every rotation/8 (within
// [50 ms, 1 s]) until ctx is done.
func (n *Node) rotateLoop(ctx context.Context) {
	for {
		rot := time.Duration(n.rotation.Load())
		if keys := n.tickets.tick(n.leader(), rot, time.Now()); keys != nil && n.mesh != nil {
			n.mesh.BroadcastTicketKeys(keys)
		}
		t := time.NewTimer(min(max(rot/8, 50*time.Millisecond), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// ticketHost implements the TicketKeys hooks for one configured host.
type ticketHost struct {
	n        *Node
	hb       hostBinding
	lifetime time.Duration
}

func (th *ticketHost) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	st := th.n.tickets.ring.Load()
	if st.active == nil { // cannot happen: New creates a first key
		return nil, nil
	}
	state, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	k := st.active
	// One allocation: the ticket (header, then the plaintext, expiry and
	// state, sealed in place: Seal may write over a plaintext that starts
	// where its output does), with the binding, the additional data, in
	// the spare room after it (a stack array passed to the AEAD interface
	// would be moved to the heap).
	n := 8 + len(state)
	size := ticketHdr + n + k.aead.Overhead()
	buf := make([]byte, size+len(store.Binding{}))
	ad := buf[size:]
	b := th.hb.bind(cs.ServerName)
	copy(ad, b[:])
	out := buf[: ticketHdr+n : size]
	out[0] = ticketVersion
	binary.BigEndian.PutUint64(out[1:9], k.id)
	rand.Read(out[9:ticketHdr])
	binary.BigEndian.PutUint64(out[ticketHdr:], uint64(th.n.cfg.Now().UnixNano()))
	copy(out[ticketHdr+8:], state)
	out = k.aead.Seal(out[:ticketHdr], out[9:ticketHdr], out[ticketHdr:], ad)
	th.n.m.wraps[modeTicketKeys].Add(1)
	return out, nil
}

func (th *ticketHost) unwrap(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	m := th.n.m
	if len(identity) == 0 { // a TLS 1.2 client asking for a first ticket
		return nil, nil
	}
	if len(identity) < ticketHdr+8+16 || identity[0] != ticketVersion {
		m.miss(missInvalid)
		return nil, nil
	}
	id := binary.BigEndian.Uint64(identity[1:9])
	var key *ringKey
	for _, k := range th.n.tickets.ring.Load().keys {
		if k.id == id {
			key = k
			break
		}
	}
	if key == nil {
		m.miss(missUnknown)
		return nil, nil
	}
	// One allocation: the binding (additional data) and after it the
	// plaintext, opened into our own buffer (identity belongs to
	// crypto/tls), which ParseSessionState then keeps.
	ct := identity[ticketHdr:]
	ad := len(store.Binding{})
	buf := make([]byte, ad, ad+len(ct))
	b := th.hb.bind(cs.ServerName)
	copy(buf, b[:])
	plain, err := key.aead.Open(buf[ad:ad], identity[9:ticketHdr], ct, buf[:ad])
	if err != nil {
		m.miss(missBinding) // wrong host (or tampered ticket)
		return nil, nil
	}
	if th.n.cfg.Now().UnixNano()-int64(binary.BigEndian.Uint64(plain)) >= int64(th.lifetime) {
		m.miss(missExpired)
		return nil, nil
	}
	ss, err := tls.ParseSessionState(plain[8:])
	if err != nil {
		m.miss(missInvalid)
		return nil, nil
	}
	if ss.EarlyData {
		// A stateless ticket cannot be made single-use: no early data in
		// TicketKeys mode (the resumption itself goes ahead in 1-RTT).
		ss.EarlyData = false
		m.early[0].Add(1)
	}
	m.hit(cs.Version)
	return ss, nil
}
