// Package wire is the session mesh's binary protocol: length-prefixed frames
//
//	[type: 1 byte][payload length: uint32 big-endian][payload]
//
// carrying the messages defined in messages.go and kv.go. Types form an
// append-only one-byte enum: a number, once used, keeps its meaning forever.
//
// Versions. Peers exchange Hello first (its encoding is the same in every
// version and never changes) and agree on the highest version both speak
// (Negotiate). Each message type belongs to the version that introduced it
// (Since): a sender never writes a type newer than the negotiated version,
// and a receiver refuses one as an unknown type, so a new kind of state is
// added by appending types under a new version and older peers simply never
// receive them. Encodings that change between versions (the record kind,
// added in 2) take the negotiated version (AppendFrameVersion,
// DecodeVersion).
//
// Every length read from the wire is checked against a named limit before
// anything is allocated. Decoding is strict: trailing bytes, unknown types
// and out-of-range lengths are errors, and the caller closes the connection.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Protocol versions this build speaks.
//
//	1: session records, tombstones, snapshots, lookups, ticket keys (types 1-11)
//	2: the record kind (store.Kind), one byte after every record's key
//	3: key-value zones (types 12-13, see kv.go)
//	4: ticket key rings (TicketKeys.Ring, one ring per TLS policy, and
//	   TicketKeys.RetiredBefore)
//	5: request-limit counts (type 14, see limits.go)
//
// A version 1 peer receives ticket-state records only: a version 1 record
// has no kind, and its receiver would take any record for one.
const (
	MinVersion uint16 = 1
	MaxVersion uint16 = 5
)

// Since returns the protocol version that introduced t (0 for a type this
// build does not know).
func Since(t Type) uint16 {
	switch {
	case t >= TypeHello && t <= TypeGoodbye:
		return 1
	case t >= TypeKVUpdate && t <= TypeKVSnapshotChunk:
		return 3
	case t == TypeLimitCounts:
		return LimitsSince
	}
	return 0
}

// Supports reports whether a connection at version v carries type t.
func Supports(v uint16, t Type) bool { s := Since(t); return s != 0 && s <= v }

// Limits.
const (
	// HeaderSize is the size of a frame header.
	HeaderSize = 5
	// MaxFrameSize bounds a frame payload; larger frames are rejected before
	// any allocation.
	MaxFrameSize = 1 << 20
	// MaxStateSize bounds one serialized session state. Sessions with larger
	// state (huge client certificate chains) stay local to their node.
	MaxStateSize = 64 << 10
	// MaxNameLen bounds cluster ids, node names, addresses and reasons.
	MaxNameLen = 255
	// MaxTicketKeys bounds a ticket key ring message.
	MaxTicketKeys = 16
)

// Type is the one-byte message type. Append only.
type Type uint8

// Message types. Never renumber; add new ones at the end.
const (
	TypeHello           Type = 1
	TypeInsert          Type = 2
	TypeDelete          Type = 3
	TypeHeartbeat       Type = 4
	TypeSnapshotRequest Type = 5
	TypeSnapshotChunk   Type = 6
	TypeSnapshotEnd     Type = 7
	TypeLookupRequest   Type = 8
	TypeLookupResponse  Type = 9
	TypeTicketKeys      Type = 10
	TypeGoodbye         Type = 11
	// Version 3.
	TypeKVUpdate        Type = 12
	TypeKVSnapshotChunk Type = 13
	// Version 5.
	TypeLimitCounts Type = 14
)

var typeNames = [...]string{"", "hello", "insert", "delete", "heartbeat", "snapshot_request",
	"snapshot_chunk", "snapshot_end", "lookup_request", "lookup_response", "ticket_keys", "goodbye",
	"kv_update", "kv_snapshot_chunk", "limit_counts"}

// String returns the type's metric-label name.
func (t Type) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// Errors returned by ReadFrame and Decode. They are wrapped with details;
// test with errors.Is.
var (
	ErrFrameTooLarge = errors.New("wire: frame too large")
	ErrUnknownType   = errors.New("wire: unknown message type")
	ErrMalformed     = errors.New("wire: malformed message")
)

// Message is one protocol message.
type Message interface {
	// Type returns the message's type byte.
	Type() Type
	// appendPayload appends the payload encoded for version v to b.
	appendPayload(b []byte, v uint16) []byte
}

// AppendFrame appends m as a complete frame (header and payload) encoded
// for MaxVersion to dst; see AppendFrameVersion.
func AppendFrame(dst []byte, m Message) []byte { return AppendFrameVersion(dst, MaxVersion, m) }

// AppendFrameVersion appends m as a complete frame encoded for version v
// to dst. It panics if the payload exceeds MaxFrameSize (senders must batch
// within the limit, see RecordSize) or if v does not carry m's type
// (senders check Supports first).
func AppendFrameVersion(dst []byte, v uint16, m Message) []byte {
	if !Supports(v, m.Type()) {
		panic(fmt.Sprintf("wire: %v is not part of protocol version %d", m.Type(), v))
	}
	start := len(dst)
	dst = append(dst, byte(m.Type()), 0, 0, 0, 0)
	dst = m.appendPayload(dst, v)
	n := len(dst) - start - HeaderSize
	if n > MaxFrameSize {
		panic(fmt.Sprintf("wire: %v payload of %d bytes exceeds MaxFrameSize", m.Type(), n))
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(n))
	return dst
}

// Reader reads frames from an underlying reader, reusing one buffer. It is
// not safe for concurrent use.
type Reader struct {
	r   io.Reader
	max int
	buf []byte
	// Version is the protocol version ReadMessage decodes: MaxVersion
	// until the caller sets the negotiated one after the Hello exchange.
	Version uint16
}

// NewReader returns a Reader that refuses payloads larger than max
// (MaxFrameSize when max <= 0 or larger).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 || max > MaxFrameSize {
		max = MaxFrameSize
	}
	return &Reader{r: r, max: max, Version: MaxVersion}
}

// Next reads one frame and returns its type and payload. The length is
// checked against the limit before the buffer grows. The payload is valid
// until the next call.
func (fr *Reader) Next() (Type, []byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > uint32(fr.max) {
		return 0, nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, n, fr.max)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return Type(hdr[0]), p, nil
}

// ReadMessage reads and decodes one frame at fr.Version.
func (fr *Reader) ReadMessage() (Message, error) {
	t, p, err := fr.Next()
	if err != nil {
		return nil, err
	}
	return DecodeVersion(fr.Version, t, p)
}

// Decode parses a payload of type t encoded for MaxVersion; see
// DecodeVersion.
func Decode(t Type, payload []byte) (Message, error) { return DecodeVersion(MaxVersion, t, payload) }

// DecodeVersion parses a payload of type t encoded for version v. A type
// that v does not carry is an unknown type. The returned message does not
// alias payload.
func DecodeVersion(v uint16, t Type, payload []byte) (Message, error) {
	if !Supports(v, t) {
		return nil, fmt.Errorf("%w: %d at version %d", ErrUnknownType, uint8(t), v)
	}
	d := decoder{b: payload, v: v}
	var m Message
	switch t {
	case TypeHello:
		m = d.hello()
	case TypeInsert:
		m = &Insert{Records: d.records()}
	case TypeDelete:
		m = d.delete()
	case TypeHeartbeat:
		m = &Heartbeat{Sent: d.i64(), Records: d.u64()}
	case TypeSnapshotRequest:
		m = &SnapshotRequest{ID: d.u64()}
	case TypeSnapshotChunk:
		id := d.u64()
		m = &SnapshotChunk{ID: id, Records: d.records()}
	case TypeSnapshotEnd:
		m = &SnapshotEnd{ID: d.u64(), Count: d.u64()}
	case TypeLookupRequest:
		m = d.lookupRequest()
	case TypeLookupResponse:
		m = d.lookupResponse()
	case TypeTicketKeys:
		m = d.ticketKeys()
	case TypeGoodbye:
		m = &Goodbye{Reason: d.str()}
	case TypeKVUpdate:
		m = &KVUpdate{Entries: d.kvEntries()}
	case TypeKVSnapshotChunk:
		id := d.u64()
		m = &KVSnapshotChunk{ID: id, Entries: d.kvEntries()}
	case TypeLimitCounts:
		m = d.limitCounts()
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, uint8(t))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v: %s", ErrMalformed, t, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %v: %d trailing bytes", ErrMalformed, t, len(d.b))
	}
	return m, nil
}

// decoder consumes a payload; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	v   uint16 // protocol version of the payload
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = errors.New(msg)
	}
	d.b = nil
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.fail("short payload")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) i64() int64 { return int64(d.u64()) }

func (d *decoder) str() string {
	n := int(d.u8())
	return string(d.take(n))
}

// count reads a uint32 element count and checks that count elements of at
// least minSize bytes fit in what is left, before the caller allocates.
func (d *decoder) count(minSize, limit int) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64(limit) || uint64(n)*uint64(minSize) > uint64(len(d.b)) {
		d.fail("element count exceeds payload")
		return 0
	}
	return int(n)
}

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// appendStr appends a short string; longer than MaxNameLen is truncated
// (callers validate names up front).
func appendStr(b []byte, s string) []byte {
	if len(s) > MaxNameLen {
		s = s[:MaxNameLen]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}
