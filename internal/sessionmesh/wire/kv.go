package wire

import (
	"github.com/meshgate/meshgate/internal/clusterstate"
)

// Key-value zone messages (protocol version 3).
//
// An entry is encoded as
//
//	[zone: u8 length + bytes][key: u16 length + bytes][flags: u8]
//	[version: i64][origin: u64][expires: i64][value: u32 length + bytes]
//
// Flag bit 0 marks a deletion (its value must be empty); the other bits
// are reserved and must be zero. Zone and key are never empty. The lengths
// are bounded by clusterstate's limits, checked before anything is
// allocated.

// kvFixed is the encoded size of an entry without its zone, key and value.
const kvFixed = 1 + 2 + 1 + 8 + 8 + 8 + 4

// kvDeleted is flag bit 0.
const kvDeleted = 1

// KVEntrySize returns the encoded size of e, for batching under
// MaxFrameSize.
func KVEntrySize(e *clusterstate.Entry) int { return kvFixed + len(e.Zone) + len(e.Key) + len(e.Value) }

// MaxKVEntries bounds the entries of one KVUpdate or KVSnapshotChunk.
const MaxKVEntries = MaxFrameSize / (kvFixed + 2)

// KVUpdate carries a batch of key-value writes and deletions that the
// sender's node made (its own API, its own data plane).
type KVUpdate struct {
	Entries []clusterstate.Entry
}

// Type implements Message.
func (*KVUpdate) Type() Type { return TypeKVUpdate }

func (m *KVUpdate) appendPayload(b []byte, _ uint16) []byte { return appendKVEntries(b, m.Entries) }

// KVSnapshotChunk is one batch of key-value entries of a snapshot stream
// (the answer to a SnapshotRequest on a version 3 connection, sent before
// its SnapshotEnd).
type KVSnapshotChunk struct {
	ID      uint64
	Entries []clusterstate.Entry
}

// Type implements Message.
func (*KVSnapshotChunk) Type() Type { return TypeKVSnapshotChunk }

func (m *KVSnapshotChunk) appendPayload(b []byte, _ uint16) []byte {
	return appendKVEntries(appendU64(b, m.ID), m.Entries)
}

// appendKVEntries appends entries; the caller validated them
// (clusterstate refuses oversized fields before they reach the mesh).
func appendKVEntries(b []byte, es []clusterstate.Entry) []byte {
	b = appendU32(b, uint32(len(es)))
	for i := range es {
		e := &es[i]
		b = append(b, byte(len(e.Zone)))
		b = append(b, e.Zone...)
		b = appendU16(b, uint16(len(e.Key)))
		b = append(b, e.Key...)
		var flags byte
		if e.Deleted {
			flags |= kvDeleted
		}
		b = append(b, flags)
		b = appendU64(b, uint64(e.Version))
		b = appendU64(b, e.Origin)
		b = appendU64(b, uint64(e.Expires))
		b = appendU32(b, uint32(len(e.Value)))
		b = append(b, e.Value...)
	}
	return b
}

func (d *decoder) kvEntries() []clusterstate.Entry {
	n := d.count(kvFixed+2, MaxKVEntries)
	if n == 0 {
		return nil
	}
	es := make([]clusterstate.Entry, n)
	for i := range es {
		d.kvEntry(&es[i])
	}
	if d.err != nil {
		return nil
	}
	return es
}

func (d *decoder) kvEntry(e *clusterstate.Entry) {
	zl := int(d.u8())
	if zl == 0 || zl > clusterstate.MaxZoneLen {
		d.fail("bad zone length")
		return
	}
	e.Zone = string(d.take(zl))
	kl := int(d.u16())
	if kl == 0 || kl > clusterstate.MaxKeyLen {
		d.fail("bad key length")
		return
	}
	e.Key = string(d.take(kl))
	flags := d.u8()
	if flags&^kvDeleted != 0 {
		d.fail("reserved entry flags set")
		return
	}
	e.Deleted = flags&kvDeleted != 0
	e.Version = d.i64()
	e.Origin = d.u64()
	e.Expires = d.i64()
	vl := d.u32()
	if vl > clusterstate.MaxValueLen {
		d.fail("value too large")
		return
	}
	if e.Deleted && vl != 0 {
		d.fail("deletion with a value")
		return
	}
	if v := d.take(int(vl)); len(v) > 0 {
		e.Value = append([]byte(nil), v...)
	}
}
