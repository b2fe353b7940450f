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
	"encoding/hex"
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

// Key rings per policy (finding 7 of issue 15). Each TLS policy in
// TicketKeys mode has a ring of its own, rotated at the policy's
// ticketKeyRotation: before, one node-wide ring rotated at the shortest
// interval any host had asked for, until restart, so one tenant's
// `ticketKeyRotation: 1m` retired every other TicketKeys host's keys after
// six minutes. The leader rotates every ring at its own interval and
// shares each one in a TicketKeys message naming it (wire version 4).
//
// The ring "" is the default ring: hosts without a policy, peers of
// protocol versions before wire.RingsSince (their only ring), and hosts
// of policies beyond maxRings, which share it at the node's interval
// (Config.TicketKeyRotation), counted in ticket_rings_full_total. Rings
// are never removed while the process runs (a ring of a deleted policy
// costs one 32-byte key per interval), so a ring a host uses never stops
// rotating; maxRings bounds them.
const maxRings = 256

// ticketRings is a node's ticket key rings by name. Its methods are safe
// for concurrent use.
type ticketRings struct {
	self     string
	fallback time.Duration // rotation of a ring no host configured
	mu       sync.Mutex
	rings    map[string]*ticketRing // guarded by mu
}

func newTicketRings(self string, fallback time.Duration) *ticketRings {
	return &ticketRings{self: self, fallback: fallback, rings: make(map[string]*ticketRing)}
}

// ringName is the ring of a policy: its name, or a digest of a name longer
// than the wire carries (namespace and name may reach 317 bytes).
func ringName(policy string) string {
	if len(policy) <= wire.MaxNameLen {
		return policy
	}
	sum := sha256.Sum256([]byte(policy))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// get returns the ring name and whether get created it. It creates a
// missing ring unless maxRings exist (then it returns nil, false).
func (t *ticketRings) get(name string) (*ticketRing, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.rings[name]; r != nil {
		return r, false
	}
	if len(t.rings) >= maxRings && name != "" {
		return nil, false
	}
	r := newTicketRing(t.self)
	r.name = name
	r.rotation.Store(int64(t.fallback))
	t.rings[name] = r
	return r, true
}

// all returns every ring, sorted by name.
func (t *ticketRings) all() []*ticketRing {
	t.mu.Lock()
	out := make([]*ticketRing, 0, len(t.rings))
	for _, r := range t.rings {
		out = append(out, r)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b *ticketRing) int { return cmp.Compare(a.name, b.name) })
	return out
}

// shared returns the messages to send a peer: every ring's own keys.
func (t *ticketRings) shared() []wire.TicketKeys {
	var out []wire.TicketKeys
	for _, r := range t.all() {
		if keys, ret := r.shared(), r.retiredBefore(); len(keys) > 0 || ret != 0 {
			out = append(out, wire.TicketKeys{Ring: r.name, RetiredBefore: ret, Keys: keys})
		}
	}
	return out
}

// ticketRing holds the cluster's keys of one ring. Readers load the
// immutable ring snapshot without locks; writers serialize on mu.
type ticketRing struct {
	self     string
	name     string       // the ring's name ("" the default ring); set at creation
	rotation atomic.Int64 // how long a key stays active (ns): the policy's, last configured
	mu       sync.Mutex
	ring     atomic.Pointer[ringState]
	offers   map[string][]wire.TicketKey // guarded by mu; see merge
	retired  int64                       // guarded by mu; keys created before it are retired (see retire)
}

// interval returns the ring's rotation interval.
func (t *ticketRing) interval() time.Duration { return time.Duration(t.rotation.Load()) }

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
	keys = slices.DeleteFunc(keys, func(k *ringKey) bool { return k.Created < t.retired })
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
	violRingLimit    = "ticket_ring_limit"        // a ring beyond maxRings
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
	// Never created before a retirement time (a revocation at T on a
	// replica whose clock is ahead): peers would drop it at once.
	k := wire.TicketKey{Created: max(now.UnixNano(), t.retired), Generator: t.self}
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

// Retiring keys (revocation of everything issued before T, revoke.go).
// TicketKeys tickets have no record to tombstone; what ends them is their
// key. A ring's retirement time only moves forward; keys created before it
// leave the ring and are refused from then on, whoever sends them, so the
// leader's next broadcast cannot bring them back. Any authenticated peer
// may move it (like a tombstone, it can only end sessions), at most
// maxKeySkew ahead of the receiver's clock: a far-future time would retire
// every key the leader makes until then.
const violRetireFuture = "ticket_retire_future"

// retire retires the keys created before t and returns how many it removed.
func (t *ticketRing) retire(before int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if before <= t.retired {
		return 0
	}
	t.retired = before
	cur := t.ring.Load()
	st := t.rebuild(slices.Clone(cur.keys), cur.leader)
	return len(cur.keys) - len(st.keys)
}

// retiredBefore returns the ring's retirement time (0: none).
func (t *ticketRing) retiredBefore() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.retired
}

// RetireTicketKeys retires, cluster-wide, every ticket key of every ring
// created before before, so that no TicketKeys ticket issued before it
// resumes: each ring goes on with a fresh key (the leader's; until it
// arrives, a follower seals under a provisional key of its own), and the
// retirement is sent to every peer, which honours it and re-sends it on
// connect. It returns the number of keys this node retired.
func (n *Node) RetireTicketKeys(before time.Time) int {
	retired := 0
	leader, now := n.leader(), time.Now()
	for _, r := range n.tickets.all() {
		retired += r.retire(before.UnixNano())
		n.tickRing(r, leader, now)
		if n.mesh != nil {
			n.mesh.BroadcastTicketKeys(wire.TicketKeys{Ring: r.name, RetiredBefore: r.retiredBefore(), Keys: r.shared()})
		}
	}
	n.m.keysRetired.Add(uint64(retired))
	return retired
}

// hostRing returns the ring of a host of policy whose keys rotate every
// rotation (0: the node's interval), created with a first key if missing.
// The last host configured decides a ring's interval: every host of one
// policy has the same, and an edited policy's new interval applies from
// its next table on. Beyond maxRings a host gets the default ring.
func (n *Node) hostRing(policy string, rotation time.Duration) *ticketRing {
	r, created := n.tickets.get(ringName(policy))
	if r == nil {
		n.m.ringsFull.Add(1)
		n.cfg.Log.Info("ticket key rings full: the policy's hosts share the default ring and its rotation",
			"policy", policy, "rings", maxRings, "rotation", n.cfg.TicketKeyRotation)
		r, created = n.tickets.get("")
		rotation = 0
	}
	if rotation > 0 {
		r.rotation.Store(int64(rotation))
	}
	if created {
		n.tickRing(r, n.leader(), time.Now())
	}
	return r
}

// tickRing runs one rotation step of r and broadcasts its keys if it
// generated one.
func (n *Node) tickRing(r *ticketRing, leader string, now time.Time) {
	if keys := r.tick(leader, r.interval(), now); keys != nil && n.mesh != nil {
		n.mesh.BroadcastTicketKeys(wire.TicketKeys{Ring: r.name, RetiredBefore: r.retiredBefore(), Keys: keys})
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

// rotateLoop re-evaluates leadership and the age of every ring's key every
// shortest rotation/8 (within [50 ms, 1 s]) until ctx is done.
func (n *Node) rotateLoop(ctx context.Context) {
	for {
		rot := n.cfg.TicketKeyRotation
		leader, now := n.leader(), time.Now()
		for _, r := range n.tickets.all() {
			n.tickRing(r, leader, now)
			rot = min(rot, r.interval())
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
	ring     *ticketRing
	hb       hostBinding
	lifetime time.Duration
}

func (th *ticketHost) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	st := th.ring.ring.Load()
	if st.active == nil { // cannot happen: hostRing creates a first key
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
	for _, k := range th.ring.ring.Load().keys {
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
