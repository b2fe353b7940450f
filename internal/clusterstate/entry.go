package clusterstate

import "bytes"

// Limits on one entry. They travel in the mesh protocol (the wire decoder
// refuses larger fields before allocating), so they only ever grow with a
// new protocol version.
const (
	// MaxZoneLen bounds a zone name.
	MaxZoneLen = 64
	// MaxKeyLen bounds a key.
	MaxKeyLen = 512
	// MaxValueLen bounds a value.
	MaxValueLen = 16 << 10
)

// Entry is one key-value record of a zone, as stored and as replicated.
// Entries are immutable once handed to a Store: the store and the mesh
// share Value read-only.
type Entry struct {
	// Zone names the table the entry belongs to.
	Zone string
	// Key is the entry's key in its zone.
	Key string
	// Value is the entry's value; empty for a deletion.
	Value []byte
	// Version orders writes of one key: the writer's clock (unix
	// nanoseconds) at the write. The highest (Version, Origin) wins on
	// every replica whatever the order of arrival (last writer wins).
	Version int64
	// Origin is the node id of the writer; it breaks ties of Version.
	Origin uint64
	// Expires is when the entry stops existing (unix nanoseconds).
	Expires int64
	// Deleted marks a tombstone: the key was deleted at Version. It is
	// kept until Expires so that an older write arriving late (a snapshot,
	// a slow peer) cannot bring the key back.
	Deleted bool
}

// newer reports whether e wins over o under last-writer-wins: the higher
// Version, then the higher Origin; an exact tie (which a Store's own
// writes never produce, their versions increase strictly) is broken by
// content (a deletion, then the greater value, then the later expiry), so
// that the order is total and replicas agree whatever the arrival order.
func (e *Entry) newer(o *Entry) bool {
	switch {
	case e.Version != o.Version:
		return e.Version > o.Version
	case e.Origin != o.Origin:
		return e.Origin > o.Origin
	case e.Deleted != o.Deleted:
		return e.Deleted
	}
	if c := bytes.Compare(e.Value, o.Value); c != 0 {
		return c > 0
	}
	return e.Expires > o.Expires
}

// size is what an entry counts against its zone's memory budget: its bytes
// plus the map slot, heap slot and entry header (measured, see
// BenchmarkZoneMemory).
func (e *Entry) size() int64 { return int64(len(e.Key)+len(e.Value)) + entryOverhead }

// entryOverhead is the per-entry bookkeeping beyond key and value bytes.
const entryOverhead = 160
