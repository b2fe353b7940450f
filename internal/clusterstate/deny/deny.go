// Package deny is the cluster-wide deny list: a key-value zone whose keys
// are client addresses and prefixes (CIDRs), compiled into an immutable Set
// whenever the zone changes (a write on any replica, a deletion, an
// expiry) and published through an atomic pointer. The data plane checks
// every connection and request against the List without locking or
// allocating. See docs/clusterstate.md.
package deny

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/clusterstate"
)

// Zone is the name of the deny list's zone.
const Zone = "deny"

// CanonicalKey parses a deny-list key — an IPv4 or IPv6 address, or a
// prefix in CIDR notation — and returns the form it is stored under: an
// address (IPv4-mapped IPv6 unmapped), or a prefix with its host bits
// cleared; a prefix of full length is its address ("192.0.2.1/32" is
// "192.0.2.1"). Zones (fe80::1%eth0) are refused.
func CanonicalKey(key string) (string, error) {
	p, err := parseKey(key)
	if err != nil {
		return "", err
	}
	if p.IsSingleIP() {
		return p.Addr().String(), nil
	}
	return p.String(), nil
}

// parseKey parses key into a masked prefix over an unmapped address.
func parseKey(key string) (netip.Prefix, error) {
	var p netip.Prefix
	if a, err := netip.ParseAddr(key); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("addresses with a zone are not allowed")
		}
		a = a.Unmap()
		p = netip.PrefixFrom(a, a.BitLen())
	} else if p, err = netip.ParsePrefix(key); err != nil {
		return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
	}
	if a := p.Addr(); a.Is4In6() { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("an IPv4-mapped prefix shorter than /96")
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Set is an immutable compiled deny list: per address family, a map of
// masked addresses for each prefix length present (IPv4 as uint32, IPv6
// as two uint64, so a probe is a mask and a hash of a small fixed-size
// key). Its zero value
// (and nil) contains nothing.
type Set struct {
	v4 []level4
	v6 []level6
	n  int
}

type level4 struct {
	bits int
	mask uint32
	m    map[uint32]struct{}
}

type level6 struct {
	bits int
	mask addr6
	m    map[addr6]struct{}
}

// addr6 is an IPv6 address as two big-endian halves.
type addr6 struct{ hi, lo uint64 }

func addr6Of(a netip.Addr) addr6 {
	b := a.As16()
	return addr6{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func mask6(bits int) addr6 {
	switch {
	case bits == 0:
		return addr6{}
	case bits <= 64:
		return addr6{^uint64(0) << (64 - bits), 0}
	case bits == 128:
		return addr6{^uint64(0), ^uint64(0)}
	}
	return addr6{^uint64(0), ^uint64(0) << (128 - bits)}
}

func mask4(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// Compile builds a Set of keys (parsed as CanonicalKey does); it returns
// the keys it could not parse, which are left out.
func Compile(keys []string) (*Set, []string) {
	var bad []string
	uniq := map[netip.Prefix]struct{}{}
	for _, k := range keys {
		p, err := parseKey(k)
		if err != nil {
			bad = append(bad, k)
			continue
		}
		uniq[p] = struct{}{}
	}
	s := &Set{n: len(uniq)}
	for p := range uniq {
		bits := p.Bits()
		if p.Addr().Is4() {
			i := slices.IndexFunc(s.v4, func(l level4) bool { return l.bits == bits })
			if i < 0 {
				s.v4 = append(s.v4, level4{bits: bits, mask: mask4(bits), m: map[uint32]struct{}{}})
				i = len(s.v4) - 1
			}
			b := p.Addr().As4()
			s.v4[i].m[binary.BigEndian.Uint32(b[:])] = struct{}{}
			continue
		}
		i := slices.IndexFunc(s.v6, func(l level6) bool { return l.bits == bits })
		if i < 0 {
			s.v6 = append(s.v6, level6{bits: bits, mask: mask6(bits), m: map[addr6]struct{}{}})
			i = len(s.v6) - 1
		}
		s.v6[i].m[addr6Of(p.Addr())] = struct{}{}
	}
	// Shortest prefixes first: a wide block is usually the reason a
	// client is denied, and the order does not change the answer.
	slices.SortFunc(s.v4, func(a, b level4) int { return a.bits - b.bits })
	slices.SortFunc(s.v6, func(a, b level6) int { return a.bits - b.bits })
	return s, bad
}

// Len returns the number of distinct addresses and prefixes in s.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Contains reports whether a (IPv4-mapped IPv6 addresses are unmapped)
// lies in an address or prefix of s. It neither allocates nor locks.
func (s *Set) Contains(a netip.Addr) bool {
	if s == nil || s.n == 0 || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		ip := binary.BigEndian.Uint32(b[:])
		for i := range s.v4 {
			if _, ok := s.v4[i].m[ip&s.v4[i].mask]; ok {
				return true
			}
		}
		return false
	}
	b := addr6Of(a)
	for i := range s.v6 {
		l := &s.v6[i]
		if _, ok := l.m[addr6{b.hi & l.mask.hi, b.lo & l.mask.lo}]; ok {
			return true
		}
	}
	return false
}

// Stage names where a client was refused, for the metrics.
type Stage int

const (
	// StageConnection is a connection closed at accept, after its PROXY
	// header and before any TLS or HTTP byte.
	StageConnection Stage = iota
	// StageRequest is a request answered 403: on a connection opened
	// before the address was denied, or over HTTP/3.
	StageRequest
	// StageL4TCP is a connection to an L4 TCP service port closed before
	// the backend is dialled (after the PROXY header when the listener
	// trusts one).
	StageL4TCP
	// StageL4UDP is a datagram to an L4 UDP service port dropped before it
	// reaches a flow (so a denied source never creates one); it counts
	// datagrams, not clients.
	StageL4UDP
	numStages
)

var stageNames = [numStages]string{"connection", "request", "l4_tcp", "l4_udp"}

// List is the deny list in force on a replica: the Set last compiled,
// behind an atomic pointer, and the refusal counters. The zero value is
// an empty list; a nil *List denies nothing. Its methods are safe for
// concurrent use.
type List struct {
	set     atomic.Pointer[Set]
	gen     atomic.Uint64
	next    atomic.Pointer[<-chan struct{}] // closed at the first change after the compile in force
	invalid atomic.Int64
	refused [numStages]atomic.Uint64
}

// Refuse reports whether a is denied and, if so, counts a refusal at
// stage. It neither allocates nor locks: one atomic load and one map
// lookup per prefix length present.
func (l *List) Refuse(a netip.Addr, stage Stage) bool {
	if l == nil || !l.set.Load().Contains(a) {
		return false
	}
	l.refused[stage].Add(1)
	return true
}

// Set returns the set in force (nil: empty).
func (l *List) Set() *Set { return l.set.Load() }

// Generation counts the sets published so far.
func (l *List) Generation() uint64 { return l.gen.Load() }

// Refused returns how many refusals were counted at stage.
func (l *List) Refused(stage Stage) uint64 { return l.refused[stage].Load() }

// Store publishes s.
func (l *List) Store(s *Set) {
	l.set.Store(s)
	l.gen.Add(1)
}

// Current reports whether the list in force was compiled from the zone
// as it is now: false before the first Refresh and from a change of the
// zone (a write, a merged snapshot) until the compile that follows it.
func (l *List) Current() bool {
	ch := l.next.Load()
	if ch == nil {
		return false
	}
	select {
	case <-*ch:
		return false
	default:
		return true
	}
}

// Follow compiles zone of st into l after every change of the zone, until
// ctx is done. changed is the channel a Refresh just returned (that
// compile stands), or nil to compile first. It is the list's one writer:
// run it on one goroutine. Keys that are not addresses or prefixes
// (written around the API's check) are left out and counted
// (meshgate_denylist_invalid_keys).
func (l *List) Follow(ctx context.Context, st *clusterstate.Store, zone string, changed <-chan struct{}) error {
	for {
		if changed == nil {
			ch, err := l.Refresh(st, zone)
			if err != nil {
				return err
			}
			changed = ch
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			changed = nil
		}
	}
}

// Refresh compiles zone of st into l once and returns the channel that
// is closed at the zone's next change. A replica calls it before it
// serves, so that it is never ready without a compiled list, then hands
// that channel to Follow; the two must not run at once.
func (l *List) Refresh(st *clusterstate.Store, zone string) (<-chan struct{}, error) {
	ch, err := st.Changed(zone)
	if err != nil {
		return nil, fmt.Errorf("deny: %w", err)
	}
	var keys []string
	if err := st.RangeZone(zone, func(e clusterstate.Entry) bool { keys = append(keys, e.Key); return true }); err != nil {
		return nil, fmt.Errorf("deny: %w", err)
	}
	s, bad := Compile(keys)
	l.invalid.Store(int64(len(bad)))
	l.Store(s)
	l.next.Store(&ch)
	return ch, nil
}

var (
	descRefused = prometheus.NewDesc("meshgate_denylist_refused_total",
		"Clients refused by the deny list, by stage: connection (closed before TLS or HTTP), request (403 on a connection opened before the address was denied, or HTTP/3), l4_tcp (L4 TCP service connection closed before the backend is dialled), l4_udp (L4 UDP service datagram dropped).",
		[]string{"stage"}, nil)
	descEntries = prometheus.NewDesc("meshgate_denylist_entries",
		"Addresses and prefixes in the deny list in force on this replica.", nil, nil)
	descInvalid = prometheus.NewDesc("meshgate_denylist_invalid_keys",
		"Keys of the deny zone that are not addresses or prefixes (left out of the list).", nil, nil)
	descGen = prometheus.NewDesc("meshgate_denylist_generation",
		"Deny lists compiled on this replica so far (one per change of the zone).", nil, nil)
)

// Describe implements prometheus.Collector.
func (l *List) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRefused, descEntries, descInvalid, descGen} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (l *List) Collect(ch chan<- prometheus.Metric) {
	for i, n := range stageNames {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(l.refused[i].Load()), n)
	}
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(l.Set().Len()))
	ch <- prometheus.MustNewConstMetric(descInvalid, prometheus.GaugeValue, float64(l.invalid.Load()))
	ch <- prometheus.MustNewConstMetric(descGen, prometheus.CounterValue, float64(l.gen.Load()))
}
