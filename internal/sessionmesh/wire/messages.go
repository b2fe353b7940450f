package wire

import (
	"encoding/binary"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

// Hello is the first message on every connection, in both directions.
type Hello struct {
	// MinVersion and MaxVersion bound the protocol versions the sender speaks.
	MinVersion, MaxVersion uint16
	// ClusterID must be equal on both sides, or the connection is refused.
	ClusterID string
	// NodeName is the sender's unique node name.
	NodeName string
	// MeshAddr is the address the sender listens on for the mesh.
	MeshAddr string
}

// Type implements Message.
func (*Hello) Type() Type { return TypeHello }

func (m *Hello) appendPayload(b []byte, v uint16) []byte {
	b = appendU16(b, m.MinVersion)
	b = appendU16(b, m.MaxVersion)
	b = appendStr(b, m.ClusterID)
	b = appendStr(b, m.NodeName)
	return appendStr(b, m.MeshAddr)
}

func (d *decoder) hello() *Hello {
	return &Hello{MinVersion: d.u16(), MaxVersion: d.u16(), ClusterID: d.str(),
		NodeName: d.str(), MeshAddr: d.str()}
}

// Negotiate returns the highest version both a and b speak, or false.
func Negotiate(aMin, aMax, bMin, bMax uint16) (uint16, bool) {
	v := min(aMax, bMax)
	if v < max(aMin, bMin) {
		return 0, false
	}
	return v, true
}

// Insert carries a batch of new session records.
type Insert struct {
	Records []store.Record
}

// Type implements Message.
func (*Insert) Type() Type { return TypeInsert }

func (m *Insert) appendPayload(b []byte, v uint16) []byte { return appendRecords(b, v, m.Records) }

// recordFixed is the encoded size of a record without its state bytes.
const recordFixed = 16 + 1 + 32 + 8 + 8 + 8 + 4

// recordKindSize is how much shorter than recordFixed a record is at
// version v (1: no kind byte).
func recordKindSize(v uint16) int {
	if v < 2 {
		return 1
	}
	return 0
}

// RecordSize returns the encoded size of r, for batching under MaxFrameSize.
func RecordSize(r *store.Record) int { return recordFixed + len(r.State) }

// MaxBatchBytes is the most record bytes (sum of RecordSize) one Insert or
// SnapshotChunk frame carries: MaxFrameSize less the chunk id and the
// record count. Senders batch within it (mesh.Config.BatchBytes).
const MaxBatchBytes = MaxFrameSize - 8 - 4

// MaxRecords bounds the records of one Insert or SnapshotChunk.
const MaxRecords = MaxFrameSize / recordFixed

// carries reports whether version v can carry r: version 1 records have no
// kind, so they carry ticket state only.
func carries(v uint16, r *store.Record) bool { return v >= 2 || r.Kind == store.KindTLSState }

func appendRecord(b []byte, v uint16, r *store.Record) []byte {
	b = append(b, r.Key[:]...)
	if v >= 2 {
		b = append(b, byte(r.Kind))
	}
	b = append(b, r.Binding[:]...)
	b = appendU64(b, r.Origin)
	b = appendU64(b, uint64(r.Created))
	b = appendU64(b, uint64(r.Expires))
	b = appendU32(b, uint32(len(r.State)))
	return append(b, r.State...)
}

// appendRecords appends the records v can carry (all from version 2 on).
func appendRecords(b []byte, v uint16, rs []store.Record) []byte {
	at := len(b)
	b = appendU32(b, 0)
	n := 0
	for i := range rs {
		if carries(v, &rs[i]) {
			b = appendRecord(b, v, &rs[i])
			n++
		}
	}
	binary.BigEndian.PutUint32(b[at:], uint32(n))
	return b
}

func (d *decoder) record(r *store.Record) {
	copy(r.Key[:], d.take(16))
	if d.v >= 2 {
		if k := d.take(1); len(k) == 1 {
			r.Kind = store.Kind(k[0])
		}
	}
	copy(r.Binding[:], d.take(32))
	r.Origin = d.u64()
	r.Created = d.i64()
	r.Expires = d.i64()
	n := d.u32()
	if n > MaxStateSize {
		d.fail("session state too large")
		return
	}
	if s := d.take(int(n)); len(s) > 0 {
		r.State = append([]byte(nil), s...)
	}
}

func (d *decoder) records() []store.Record {
	n := d.count(recordFixed-recordKindSize(d.v), MaxRecords)
	if n == 0 {
		return nil
	}
	rs := make([]store.Record, n)
	for i := range rs {
		d.record(&rs[i])
	}
	if d.err != nil {
		return nil
	}
	return rs
}

// Tombstone revokes one session id until Expires (unix nanoseconds).
type Tombstone struct {
	Key     store.Key
	Expires int64
}

// Delete carries a batch of revocations.
type Delete struct {
	Tombstones []Tombstone
}

// Type implements Message.
func (*Delete) Type() Type { return TypeDelete }

func (m *Delete) appendPayload(b []byte, v uint16) []byte {
	b = appendU32(b, uint32(len(m.Tombstones)))
	for _, t := range m.Tombstones {
		b = append(b, t.Key[:]...)
		b = appendU64(b, uint64(t.Expires))
	}
	return b
}

func (d *decoder) delete() *Delete {
	n := d.count(24, MaxFrameSize/24)
	m := &Delete{}
	if n > 0 {
		m.Tombstones = make([]Tombstone, n)
		for i := range m.Tombstones {
			copy(m.Tombstones[i].Key[:], d.take(16))
			m.Tombstones[i].Expires = d.i64()
		}
	}
	return m
}

// Heartbeat keeps an idle connection alive and carries the sender's clock
// and record count.
type Heartbeat struct {
	Sent    int64
	Records uint64
}

// Type implements Message.
func (*Heartbeat) Type() Type { return TypeHeartbeat }

func (m *Heartbeat) appendPayload(b []byte, v uint16) []byte {
	return appendU64(appendU64(b, uint64(m.Sent)), m.Records)
}

// SnapshotRequest asks the receiver to stream all its live records back on
// the same connection as SnapshotChunks followed by a SnapshotEnd.
type SnapshotRequest struct {
	ID uint64
}

// Type implements Message.
func (*SnapshotRequest) Type() Type { return TypeSnapshotRequest }

func (m *SnapshotRequest) appendPayload(b []byte, v uint16) []byte { return appendU64(b, m.ID) }

// SnapshotChunk is one batch of a snapshot stream.
type SnapshotChunk struct {
	ID      uint64
	Records []store.Record
}

// Type implements Message.
func (*SnapshotChunk) Type() Type { return TypeSnapshotChunk }

func (m *SnapshotChunk) appendPayload(b []byte, v uint16) []byte {
	return appendRecords(appendU64(b, m.ID), v, m.Records)
}

// SnapshotEnd closes a snapshot stream; Count is the number of records sent.
type SnapshotEnd struct {
	ID    uint64
	Count uint64
}

// Type implements Message.
func (*SnapshotEnd) Type() Type { return TypeSnapshotEnd }

func (m *SnapshotEnd) appendPayload(b []byte, v uint16) []byte {
	return appendU64(appendU64(b, m.ID), m.Count)
}

// LookupRequest asks the receiver for one record by key (point lookup).
type LookupRequest struct {
	ID  uint64
	Key store.Key
}

// Type implements Message.
func (*LookupRequest) Type() Type { return TypeLookupRequest }

func (m *LookupRequest) appendPayload(b []byte, v uint16) []byte {
	return append(appendU64(b, m.ID), m.Key[:]...)
}

func (d *decoder) lookupRequest() *LookupRequest {
	m := &LookupRequest{ID: d.u64()}
	copy(m.Key[:], d.take(16))
	return m
}

// LookupResponse answers a LookupRequest with the same ID. Record is only
// meaningful when Found.
type LookupResponse struct {
	ID     uint64
	Found  bool
	Record store.Record
}

// Type implements Message.
func (*LookupResponse) Type() Type { return TypeLookupResponse }

func (m *LookupResponse) appendPayload(b []byte, v uint16) []byte {
	b = appendU64(b, m.ID)
	if !m.Found || !carries(v, &m.Record) {
		return append(b, 0)
	}
	return appendRecord(append(b, 1), v, &m.Record)
}

func (d *decoder) lookupResponse() *LookupResponse {
	m := &LookupResponse{ID: d.u64()}
	switch d.u8() {
	case 0:
	case 1:
		m.Found = true
		d.record(&m.Record)
	default:
		d.fail("bad found flag")
	}
	return m
}

// TicketKey is one session ticket encryption key. It is secret.
type TicketKey struct {
	// Created is when the generator made it (unix nanoseconds); it orders keys.
	Created int64
	// Generator is the node name that generated the key.
	Generator string
	// Secret is the key material.
	Secret [32]byte
}

// TicketKeys distributes the ticket keys of one key ring, newest first.
type TicketKeys struct {
	// Ring names the key ring (the session layer keeps one per TLS
	// policy); "" is the default ring. It is on the wire from version 4
	// (RingsSince): a sender never sends another ring than "" at an
	// older version, and a receiver of an older version's frame reads "".
	Ring string
	// RetiredBefore (unix nanoseconds, 0: none) retires every key of the
	// ring created before it: a revocation of everything issued before a
	// time (version 4 on, like Ring).
	RetiredBefore int64
	Keys          []TicketKey
}

// RingsSince is the protocol version that carries TicketKeys.Ring.
const RingsSince uint16 = 4

// Type implements Message.
func (*TicketKeys) Type() Type { return TypeTicketKeys }

func (m *TicketKeys) appendPayload(b []byte, v uint16) []byte {
	if v >= RingsSince {
		b = appendStr(b, m.Ring)
		b = appendU64(b, uint64(m.RetiredBefore))
	}
	b = append(b, byte(len(m.Keys)))
	for _, k := range m.Keys {
		b = appendU64(b, uint64(k.Created))
		b = appendStr(b, k.Generator)
		b = append(b, k.Secret[:]...)
	}
	return b
}

func (d *decoder) ticketKeys() *TicketKeys {
	m := &TicketKeys{}
	if d.v >= RingsSince {
		m.Ring = d.str()
		m.RetiredBefore = d.i64()
	}
	n := int(d.u8())
	if n > MaxTicketKeys {
		d.fail("too many ticket keys")
		return nil
	}
	if n > 0 {
		m.Keys = make([]TicketKey, n)
		for i := range m.Keys {
			m.Keys[i].Created = d.i64()
			m.Keys[i].Generator = d.str()
			copy(m.Keys[i].Secret[:], d.take(32))
		}
	}
	return m
}

// Goodbye announces a clean leave; the receiver stops reconnecting until
// the peer shows up again.
type Goodbye struct {
	Reason string
}

// Type implements Message.
func (*Goodbye) Type() Type { return TypeGoodbye }

func (m *Goodbye) appendPayload(b []byte, v uint16) []byte { return appendStr(b, m.Reason) }
