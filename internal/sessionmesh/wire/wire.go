// Package wire is the session mesh's binary protocol: length-prefixed frames
//
//	[type: 1 byte][payload length: uint32 big-endian][payload]
//
// carrying the messages defined in messages.go. Types form an append-only
// one-byte enum: a number, once used, keeps its meaning forever. Peers
// exchange Hello first and agree on the highest common version between
// MinVersion and MaxVersion.
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

// Protocol versions this build speaks. Version 2 added the record kind
// (store.Kind) to every record; version 1 peers are refused.
const (
	MinVersion uint16 = 2
	MaxVersion uint16 = 2
)

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
)

var typeNames = [...]string{"", "hello", "insert", "delete", "heartbeat", "snapshot_request",
	"snapshot_chunk", "snapshot_end", "lookup_request", "lookup_response", "ticket_keys", "goodbye"}

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
	// appendPayload appends the encoded payload to b.
	appendPayload(b []byte) []byte
}

// AppendFrame appends m as a complete frame (header and payload) to dst.
// It panics if the payload exceeds MaxFrameSize: senders must batch within
// the limit (see RecordSize).
func AppendFrame(dst []byte, m Message) []byte {
	start := len(dst)
	dst = append(dst, byte(m.Type()), 0, 0, 0, 0)
	dst = m.appendPayload(dst)
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
}

// NewReader returns a Reader that refuses payloads larger than max
// (MaxFrameSize when max <= 0 or larger).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 || max > MaxFrameSize {
		max = MaxFrameSize
	}
	return &Reader{r: r, max: max}
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

// ReadMessage reads and decodes one frame.
func (fr *Reader) ReadMessage() (Message, error) {
	t, p, err := fr.Next()
	if err != nil {
		return nil, err
	}
	return Decode(t, p)
}

// Decode parses a payload of type t. The returned message does not alias
// payload.
func Decode(t Type, payload []byte) (Message, error) {
	d := decoder{b: payload}
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
