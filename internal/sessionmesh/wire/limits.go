package wire

import (
	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
)

// Request-limit messages (protocol version 5).
//
// A LimitCounts payload is
//
//	[count: u32] count × [limit: u32][key hash: u64][window start: i64 Unix ms][admitted: u32]
//
// 24 bytes an entry, nothing else: the payload length must be exactly
// 4 + 24 × count, checked before anything is allocated.

// LimitsSince is the protocol version that carries TypeLimitCounts.
const LimitsSince uint16 = 5

// LimitCountSize is the encoded size of one ratelimit.Count.
const LimitCountSize = 4 + 8 + 8 + 4

// MaxLimitCounts bounds the entries of one LimitCounts frame.
const MaxLimitCounts = (MaxFrameSize - 4) / LimitCountSize

// LimitCounts carries the request counts its sender's node changed since
// its previous report (ratelimit.Limiter.Report), on the sender's outbound
// connection. Counts are absolute per window: a lost frame only leaves
// the receiver's estimate one report older.
type LimitCounts struct {
	Counts []ratelimit.Count
}

// Type implements Message.
func (*LimitCounts) Type() Type { return TypeLimitCounts }

func (m *LimitCounts) appendPayload(b []byte, _ uint16) []byte {
	b = appendU32(b, uint32(len(m.Counts)))
	for _, c := range m.Counts {
		b = appendU32(b, c.Limit)
		b = appendU64(b, c.Key)
		b = appendU64(b, uint64(c.Window))
		b = appendU32(b, c.Count)
	}
	return b
}

func (d *decoder) limitCounts() *LimitCounts {
	n := d.count(LimitCountSize, MaxLimitCounts)
	if d.err == nil && len(d.b) != n*LimitCountSize {
		d.fail("limit counts length mismatch")
	}
	if n == 0 || d.err != nil {
		return &LimitCounts{}
	}
	cs := make([]ratelimit.Count, n)
	for i := range cs {
		cs[i] = ratelimit.Count{Limit: d.u32(), Key: d.u64(), Window: d.i64(), Count: d.u32()}
	}
	return &LimitCounts{Counts: cs}
}
