package sessionmesh

import (
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// The record rules of finding 5 (issue 15), one by one: refusals, clamps
// and what each counts.
func TestCheckRecordRules(t *testing.T) {
	ca, _ := newCA(t)
	n, err := New(Config{NodeName: "n", CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := New(Config{NodeName: "peer", CA: ca}) // same MAC key: a replica
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	state := []byte("some session state")
	tlsRec := func(mut func(*store.Record)) store.Record {
		r := store.Record{Key: peer.sessionKey(state), Kind: store.KindTLSState, Origin: peer.id,
			Created: now.UnixNano(), Expires: now.Add(time.Minute).UnixNano(), State: state}
		if mut != nil {
			mut(&r)
		}
		return r
	}
	sc := peer.SessionIDCache(Host{})
	id := sc.NewSessionID("a")
	_, idExp, idKey, _ := peer.parseSessionID(id)
	sidRec := func(mut func(*store.Record)) store.Record {
		r := store.Record{Key: idKey, Kind: store.KindTLS12Session, Origin: peer.id, Created: now.UnixNano(),
			Expires: idExp.UnixNano(), State: append(append([]byte(nil), id...), state...)}
		if mut != nil {
			mut(&r)
		}
		return r
	}
	n.noteLifetime(time.Hour)
	for _, tc := range []struct {
		name    string
		r       store.Record
		insert  bool
		ok      bool
		viol    string // "" : none
		expires int64  // 0: unchanged
	}{
		{"replicated session", tlsRec(nil), true, true, "", 0},
		{"snapshot of another issuer's session", tlsRec(func(r *store.Record) { r.Origin = 7 }), false, true, "", 0},
		{"insert under another origin", tlsRec(func(r *store.Record) { r.Origin = 7 }), true, false, violRecordOrigin, 0},
		{"key not its own", tlsRec(func(r *store.Record) { r.Key[0] ^= 1 }), true, false, violRecordKey, 0},
		{"unknown kind", tlsRec(func(r *store.Record) { r.Kind = 9 }), true, false, violRecordKind, 0},
		{"unprovable session id record", tlsRec(func(r *store.Record) { r.Kind = store.KindTLS12SessionID }), true, false, violRecordKind, 0},
		{"expiry a century ahead", tlsRec(func(r *store.Record) { r.Expires = now.AddDate(100, 0, 0).UnixNano() }), true, true, violRecordExpiry, now.Add(time.Hour).UnixNano()},
		{"created in the future", tlsRec(func(r *store.Record) { r.Created = now.Add(time.Hour).UnixNano() }), true, true, violRecordCreated, 0},
		{"session id record", sidRec(nil), true, true, "", 0},
		{"session id record, key of another id", sidRec(func(r *store.Record) { r.Key[0] ^= 1 }), true, false, violRecordKey, 0},
		{"session id record, forged id", sidRec(func(r *store.Record) { r.State[30] ^= 1 }), true, false, violRecordKey, 0},
		{"session id record, other origin", sidRec(func(r *store.Record) { r.Origin = 7 }), false, false, violRecordOrigin, 0},
		{"session id record, past the id's expiry", sidRec(func(r *store.Record) { r.Expires += int64(time.Minute) }), true, true, violRecordExpiry, idExp.UnixNano()},
		{"session id record, too short", sidRec(func(r *store.Record) { r.State = r.State[:10] }), true, false, violRecordKey, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := n.m.violationCounts()["peer"]
			r := tc.r
			if got := n.checkRecord("peer", &r, tc.insert, now); got != tc.ok {
				t.Errorf("accepted = %v, want %v", got, tc.ok)
			}
			after := n.m.violationCounts()["peer"]
			for reason, c := range after {
				if d := c - before[reason]; (reason == tc.viol) != (d == 1) || d > 1 {
					t.Errorf("violation %s counted %d times (want %q once)", reason, d, tc.viol)
				}
			}
			if tc.viol != "" && after[tc.viol] == before[tc.viol] {
				t.Errorf("violation %s not counted", tc.viol)
			}
			if tc.expires != 0 && r.Expires != tc.expires {
				t.Errorf("expiry %v, want clamped to %v", time.Unix(0, r.Expires), time.Unix(0, tc.expires))
			}
			if tc.viol == violRecordCreated && r.Created != now.UnixNano() {
				t.Errorf("created not clamped to now")
			}
		})
	}
	// Tombstones: expiry clamped to the same bound, counted.
	var k store.Key
	(*handler)(n).HandleDelete("peer", []wire.Tombstone{{Key: k, Expires: now.AddDate(100, 0, 0).UnixNano()}})
	if c := n.m.violationCounts()["peer"][violTombstoneExpiry]; c != 1 {
		t.Errorf("far-future tombstone counted %d times", c)
	}
	if n.store.Sweep(now.Add(2*time.Hour)) != 1 {
		t.Error("far-future tombstone outlived the longest lifetime")
	}
}
