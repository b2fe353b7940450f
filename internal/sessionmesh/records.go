package sessionmesh

import (
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

// Records from peers (inserts, snapshot chunks, point lookup answers) are
// checked before the store sees them. The store keeps the first writer of
// a key and evicts the soonest-expiring records first, and a snapshot
// hands a node's records to every joiner: a record accepted with a key
// that is not its own, or an expiry a century away, would shadow a real
// session, push real sessions out of a full store and outlive restarts.
// So, per record:
//
//   - its key must be its own: for KindTLSState the cluster MAC of its
//     state (sessionKey), for KindTLS12Session the key of the MAC'd
//     session id it starts with (whose origin and expiry it must also
//     carry). Forging either takes the cluster MAC key, which a mesh
//     certificate alone does not give. Other kinds (the unprovable
//     KindTLS12SessionID included) are refused;
//   - an insert's origin must be its sender (records travel only on their
//     issuer's connection); a lookup answer must carry the key asked for
//     and come from the issuer asked;
//   - its expiry is clamped to now + the longest lifetime this node has
//     configured (MaxLifetime before the first host), its creation time to
//     now if it lies more than maxKeySkew ahead.
//
// Each refusal or clamp is counted in peer_violations_total{peer,reason}.
const (
	violRecordKind    = "record_kind"           // not a kind this build issues
	violRecordKey     = "record_key"            // key is not the record's own
	violRecordOrigin  = "record_origin"         // origin is not the sender (insert) or the id's issuer
	violRecordExpiry  = "record_expiry"         // expiry past the longest lifetime: clamped
	violRecordCreated = "record_created_future" // creation time ahead of our clock: clamped
	violLookupKey     = "lookup_wrong_key"      // a lookup answered with another key's record
	// violTombstoneExpiry: a tombstone kept past the longest lifetime
	// (tombstones are never evicted): clamped.
	violTombstoneExpiry = "tombstone_expiry"
)

// noteLifetime raises the longest configured session lifetime to d.
func (n *Node) noteLifetime(d time.Duration) {
	for {
		cur := n.maxLifetime.Load()
		if int64(d) <= cur || n.maxLifetime.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// lifetimeBound is how far past now a peer's record may expire.
func (n *Node) lifetimeBound() time.Duration {
	if d := n.maxLifetime.Load(); d > 0 {
		return time.Duration(d)
	}
	return MaxLifetime
}

// checkRecord applies the rules above to r, received from peer from at
// now (insert: on its issuer's connection), clamping r's times in place.
// It reports whether r may be stored; refusals and clamps are counted.
func (n *Node) checkRecord(from string, r *store.Record, insert bool, now time.Time) bool {
	refuse := func(reason string) bool {
		n.m.violation(from, reason)
		return false
	}
	switch r.Kind {
	case store.KindTLSState:
		if n.sessionKey(r.State) != r.Key {
			return refuse(violRecordKey)
		}
	case store.KindTLS12Session:
		if len(r.State) < sidLen {
			return refuse(violRecordKey)
		}
		origin, exp, key, ok := n.parseSessionID(r.State[:sidLen])
		if !ok || key != r.Key {
			return refuse(violRecordKey)
		}
		if origin != r.Origin {
			return refuse(violRecordOrigin)
		}
		if e := exp.UnixNano(); r.Expires > e {
			r.Expires = e
			n.m.violation(from, violRecordExpiry)
		}
	default:
		return refuse(violRecordKind)
	}
	if insert && r.Origin != mesh.NodeID(from) {
		return refuse(violRecordOrigin)
	}
	if limit := now.Add(n.lifetimeBound()).UnixNano(); r.Expires > limit {
		r.Expires = limit
		n.m.violation(from, violRecordExpiry)
	}
	if limit := now.Add(maxKeySkew).UnixNano(); r.Created > limit {
		r.Created = now.UnixNano()
		n.m.violation(from, violRecordCreated)
	}
	return true
}

// checkAnswer checks a point lookup's answer from the peer asked for key
// as the issuer origin, as checkRecord does, and that it is the record
// asked for.
func (n *Node) checkAnswer(r *store.Record, origin uint64, key store.Key, now time.Time) bool {
	from := n.mesh.PeerName(origin)
	switch {
	case r.Key != key:
		n.m.violation(from, violLookupKey)
		return false
	case r.Origin != origin:
		n.m.violation(from, violRecordOrigin)
		return false
	}
	return n.checkRecord(from, r, false, now)
}
