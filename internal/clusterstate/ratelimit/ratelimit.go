// Package ratelimit is the cluster-wide request limiter of
// docs/clusterstate.md ("Cluster-wide request limits"): per limit and key,
// every node counts what it admitted in aligned wall-clock windows and
// periodically reports the counts that changed (Report); peers' reports
// are merged in (Merge). A request is admitted while the sliding-window
// estimate of the cluster's count,
//
//	Σ_nodes prev × (1 − elapsed/window) + cur,
//
// is under the limit's rate: this node's counts exactly, its peers' as last
// reported. Counts of a window older than the previous one are ignored, so
// the counts of a dead or partitioned peer stop mattering within two
// windows and each side of a partition then enforces the rate on its own.
//
// Keys are hashed with SipHash-2-4 under a key every replica shares (the
// limit's own key is derived from it and the limit's name), so clients
// cannot aim collisions and keys never travel in the clear. Memory is
// bounded: at most Config.MaxKeys keys are tracked; beyond it the least
// recently used of a sample is evicted and counted.
package ratelimit

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dchest/siphash"
)

// Defaults for zero Config fields.
const (
	DefaultMaxKeys = 100_000
	// evictSample is how many keys of a shard an eviction compares.
	evictSample = 8
	shards      = 64
)

// Spec configures one limit.
type Spec struct {
	// Name identifies the limit on every replica ("namespace/ingress#rps");
	// counts are exchanged under an id derived from it. Required.
	Name string
	// Rate is the number of requests the cluster admits per Window for one
	// key. Required (> 0).
	Rate uint32
	// Window is the counting window, a whole number of milliseconds
	// (1s for rps, 60s for rpm). Required.
	Window time.Duration
}

// Count is one entry of a report: the number of requests node admitted for
// a key in the window starting at Window (Unix milliseconds). Counts are
// absolute, not increments: a lost or repeated report only delays peers.
type Count struct {
	Limit  uint32
	Key    uint64
	Window int64
	Count  uint32
}

// Config configures a Limiter.
type Config struct {
	// Key is the 16-byte SipHash key every replica of the cluster shares.
	// Nil means a random one: counts then only match this node's own.
	Key []byte
	// MaxKeys bounds the keys tracked over all limits (own and peers').
	// Zero: DefaultMaxKeys.
	MaxKeys int
	// Now is the clock; nil means time.Now. Nodes' clocks must agree within
	// a small part of a window (NTP).
	Now func() time.Time
}

// Limiter holds the counts of every limit. It is safe for concurrent use.
type Limiter struct {
	k0, k1  uint64
	maxKeys int64
	now     func() time.Time

	mu     sync.Mutex
	limits atomic.Pointer[map[uint32]*Limit] // by id; copy on write under mu
	nodes  map[string]uint16                 // peer name → slot; under mu

	shard [shards]shard
	keys  atomic.Int64

	dirtyMu sync.Mutex
	dirty   []*keyState
	// pending gets a value when dirty becomes non-empty (Pending).
	pending chan struct{}

	evictions, unknown, merged, reported atomic.Uint64
	removedLimits, removedKeys           atomic.Uint64
}

type shard struct {
	mu sync.RWMutex
	m  map[entryKey]*keyState
}

type entryKey struct {
	limit uint32
	key   uint64
}

// New returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	key := cfg.Key
	if key == nil {
		key = make([]byte, 16)
		rand.Read(key)
	}
	if len(key) != 16 {
		return nil, errors.New("ratelimit: key must be 16 bytes")
	}
	l := &Limiter{k0: binary.LittleEndian.Uint64(key), k1: binary.LittleEndian.Uint64(key[8:]),
		maxKeys: int64(cfg.MaxKeys), now: cfg.Now, nodes: map[string]uint16{},
		pending: make(chan struct{}, 1)}
	if l.maxKeys <= 0 {
		l.maxKeys = DefaultMaxKeys
	}
	if l.now == nil {
		l.now = time.Now
	}
	for i := range l.shard {
		l.shard[i].m = make(map[entryKey]*keyState)
	}
	m := map[uint32]*Limit{}
	l.limits.Store(&m)
	return l, nil
}

// Limit is one configured limit, a handle for Allow. Safe for concurrent use.
type Limit struct {
	l      *Limiter
	name   string
	id     uint32
	k0, k1 uint64
	rate   atomic.Uint32
	window atomic.Int64 // ms

	admitted, rejected, tracked, evicted atomic.Int64
}

func (l *Limiter) hashString(s string) uint64 { return siphash.Hash(l.k0, l.k1, []byte(s)) }

// Limit returns the limit named spec.Name, creating it or updating its rate
// and window (counts are kept across updates of the same name).
func (l *Limiter) Limit(spec Spec) (*Limit, error) {
	w := spec.Window.Milliseconds()
	if spec.Name == "" || spec.Rate == 0 || w <= 0 || spec.Window%time.Millisecond != 0 {
		return nil, errors.New("ratelimit: a limit needs a name, a rate and a window in whole milliseconds")
	}
	id := uint32(l.hashString("id\x00" + spec.Name))
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := *l.limits.Load()
	lim := cur[id]
	if lim != nil && lim.name != spec.Name {
		return nil, errors.New("ratelimit: limit id collision between " + lim.name + " and " + spec.Name)
	}
	if lim == nil {
		lim = &Limit{l: l, name: spec.Name, id: id,
			k0: l.hashString("k0\x00" + spec.Name), k1: l.hashString("k1\x00" + spec.Name)}
		next := make(map[uint32]*Limit, len(cur)+1)
		for k, v := range cur {
			next[k] = v
		}
		next[id] = lim
		l.limits.Store(&next)
	}
	lim.rate.Store(spec.Rate)
	lim.window.Store(w)
	return lim, nil
}

// Remove forgets the limit named name and every key it tracks, and
// returns how many keys it freed (counted in Stats.RemovedKeys). A caller
// still holding the *Limit may use it: its keys are then tracked again
// until Sweep forgets them. Peers' counts for it are dropped as unknown
// from then on. Removing an unknown name does nothing.
func (l *Limiter) Remove(name string) int {
	id := uint32(l.hashString("id\x00" + name))
	l.mu.Lock()
	cur := *l.limits.Load()
	lim := cur[id]
	if lim == nil || lim.name != name {
		l.mu.Unlock()
		return 0
	}
	next := make(map[uint32]*Limit, len(cur))
	for k, v := range cur {
		if k != id {
			next[k] = v
		}
	}
	l.limits.Store(&next)
	l.mu.Unlock()
	n := 0
	for i := range l.shard {
		sh := &l.shard[i]
		sh.mu.Lock()
		for ek, k := range sh.m {
			if ek.limit != id {
				continue
			}
			k.mu.Lock()
			k.gone = true
			k.mu.Unlock()
			delete(sh.m, ek)
			l.keys.Add(-1)
			lim.tracked.Add(-1)
			n++
		}
		sh.mu.Unlock()
	}
	l.removedLimits.Add(1)
	l.removedKeys.Add(uint64(n))
	return n
}

// Name returns the limit's name.
func (lm *Limit) Name() string { return lm.name }

// peerCount is what a peer last reported for a key: its count in the
// window starting at win, and in the window before it.
type peerCount struct {
	node      uint16
	win       int64
	cur, prev uint32
}

// keyState is one key of one limit. mu guards every field.
type keyState struct {
	mu        sync.Mutex
	lim       *Limit
	ek        entryKey
	win       int64 // start of the own current window, ms
	cur, prev uint32
	peers     []peerCount
	dirty     bool // own counts changed since the last report
	prevDirty bool // the final count of the window before win is unreported
	last      int64
	gone      bool // evicted or swept
}

// roll moves k's own counts to the window starting at ws.
func (k *keyState) roll(ws, w int64) {
	switch {
	case ws == k.win:
		return
	case ws == k.win+w:
		k.prev, k.cur = k.cur, 0
		k.prevDirty = k.dirty
	case ws > k.win:
		k.prev, k.cur = 0, 0
		k.prevDirty = false
	default:
		return // the clock stepped back: keep counting in the newer window
	}
	k.win = ws
}

// totals returns the cluster's counts for the window starting at ws and
// the one before it.
func (k *keyState) totals(ws, w int64) (cur, prev uint64) {
	cur, prev = uint64(k.cur), uint64(k.prev)
	if k.win != ws {
		cur, prev = 0, 0
		if k.win == ws-w {
			prev = uint64(k.cur)
		}
	}
	for i := range k.peers {
		p := &k.peers[i]
		switch p.win {
		case ws:
			cur += uint64(p.cur)
			prev += uint64(p.prev)
		case ws - w:
			prev += uint64(p.cur)
		}
	}
	return cur, prev
}

// Decision is the outcome of Allow.
type Decision struct {
	// OK: the request is admitted (and counted).
	OK bool
	// RetryAfter, when !OK, is how long until the estimate falls under the
	// rate if nothing more is admitted (at least 1s, whole seconds, as
	// Retry-After carries).
	RetryAfter time.Duration
}

// Allow decides one request of key and counts it when admitted. key is not
// retained.
func (lm *Limit) Allow(key []byte) Decision {
	l := lm.l
	h := siphash.Hash(lm.k0, lm.k1, key)
	k := l.key(lm, h, true)
	now := l.now().UnixMilli()
	w := lm.window.Load()
	rate := uint64(lm.rate.Load())
	ws := now - now%w
	e := uint64(now - ws)
	k.mu.Lock()
	k.roll(ws, w)
	cur, prev := k.totals(ws, w)
	// est = prev × (w − e)/w + cur < rate, in integers.
	ok := prev*(uint64(w)-e)+cur*uint64(w) < rate*uint64(w)
	mark := false
	if ok {
		k.cur++
		mark = !k.dirty && !k.gone
		k.dirty = true
	}
	k.last = now
	k.mu.Unlock()
	if mark {
		l.dirtyMu.Lock()
		first := len(l.dirty) == 0
		l.dirty = append(l.dirty, k)
		l.dirtyMu.Unlock()
		if first {
			select {
			case l.pending <- struct{}{}:
			default: // already signalled
			}
		}
	}
	if ok {
		lm.admitted.Add(1)
		return Decision{OK: true}
	}
	lm.rejected.Add(1)
	return Decision{RetryAfter: retryAfter(cur, prev, rate, e, uint64(w))}
}

// AllowString is Allow for a string key, without copying it.
func (lm *Limit) AllowString(key string) Decision {
	return lm.Allow(unsafe.Slice(unsafe.StringData(key), len(key)))
}

// retryAfter solves the estimate for the first time it is under rate with
// no more admissions: within this window when cur < rate (prev's weight
// decays), else in the next one (cur's weight decays).
func retryAfter(cur, prev, rate, e, w uint64) time.Duration {
	var ms uint64
	if cur < rate {
		// prev × (w − e − d)/w + cur < rate ⇔ d > w − e − (rate − cur) × w / prev
		if prev > 0 {
			if need := (rate - cur) * w / prev; need < w-e {
				ms = w - e - need
			}
		}
	} else {
		// cur × (w − d')/w < rate ⇔ d' > w × (1 − rate/cur)
		ms = w - e + w - rate*w/cur
	}
	s := (time.Duration(ms)*time.Millisecond + time.Second - 1) / time.Second
	return max(s, 1) * time.Second
}

// key finds or (when create) makes the state of (lm, h).
func (l *Limiter) key(lm *Limit, h uint64, create bool) *keyState {
	ek := entryKey{lm.id, h}
	sh := &l.shard[h%shards]
	sh.mu.RLock()
	k := sh.m[ek]
	sh.mu.RUnlock()
	if k != nil || !create {
		return k
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if k = sh.m[ek]; k != nil {
		return k
	}
	if l.keys.Load() >= l.maxKeys {
		l.evictLocked(sh)
	}
	k = &keyState{lim: lm, ek: ek}
	sh.m[ek] = k
	l.keys.Add(1)
	lm.tracked.Add(1)
	return k
}

// evictLocked removes the least recently used of a sample of sh's keys
// (or of another shard's when sh is empty). sh.mu is held.
func (l *Limiter) evictLocked(sh *shard) {
	if len(sh.m) == 0 {
		// The new key's shard is empty while the limiter is full: go over
		// the cap by one rather than take a second shard lock here.
		return
	}
	var victim *keyState
	n := 0
	for _, k := range sh.m {
		k.mu.Lock()
		if victim == nil || k.last < victim.last {
			victim = k
		}
		k.mu.Unlock()
		if n++; n == evictSample {
			break
		}
	}
	victim.mu.Lock()
	victim.gone = true
	victim.mu.Unlock()
	delete(sh.m, victim.ek)
	l.keys.Add(-1)
	victim.lim.tracked.Add(-1)
	victim.lim.evicted.Add(1)
	l.evictions.Add(1)
}

// Pending receives a value when this node has counts to report: after
// the first admitted request since the last Report (or since New). A
// reporter waits on it instead of polling, so an idle node does no work;
// a value may also come when a Report made after the request took its
// count already (Report then returns nothing).
func (l *Limiter) Pending() <-chan struct{} { return l.pending }

// Report returns the counts this node changed since the last call, for
// its peers, and marks them reported. A key whose window rolled since
// also gets its final count of the window before.
func (l *Limiter) Report() []Count {
	l.dirtyMu.Lock()
	ks := l.dirty
	l.dirty = nil
	l.dirtyMu.Unlock()
	out := make([]Count, 0, len(ks))
	for _, k := range ks {
		k.mu.Lock()
		if !k.gone {
			w := k.lim.window.Load()
			if k.prevDirty {
				out = append(out, Count{Limit: k.ek.limit, Key: k.ek.key, Window: k.win - w, Count: k.prev})
			}
			out = append(out, Count{Limit: k.ek.limit, Key: k.ek.key, Window: k.win, Count: k.cur})
		}
		k.dirty, k.prevDirty = false, false
		k.mu.Unlock()
	}
	l.reported.Add(uint64(len(out)))
	return out
}

// maxNodes bounds the peers whose counts a key holds.
const maxNodes = 1 << 10

// Merge applies the counts peer `from` reported. Counts of limits this
// node does not have are dropped and counted (Stats.Unknown).
func (l *Limiter) Merge(from string, cs []Count) {
	l.mu.Lock()
	node, ok := l.nodes[from]
	if !ok && len(l.nodes) < maxNodes {
		node = uint16(len(l.nodes))
		l.nodes[from] = node
		ok = true
	}
	l.mu.Unlock()
	if !ok {
		l.unknown.Add(uint64(len(cs)))
		return
	}
	limits := *l.limits.Load()
	now := l.now().UnixMilli()
	for _, c := range cs {
		lm := limits[c.Limit]
		if lm == nil {
			l.unknown.Add(1)
			continue
		}
		w := lm.window.Load()
		if c.Window%w != 0 || c.Window < now-now%w-w {
			continue // another window length (a config rollout) or too old to matter
		}
		k := l.key(lm, c.Key, true)
		k.mu.Lock()
		k.mergePeer(node, c, w)
		k.last = now
		k.mu.Unlock()
		l.merged.Add(1)
	}
}

func (k *keyState) mergePeer(node uint16, c Count, w int64) {
	i := 0
	for i < len(k.peers) && k.peers[i].node != node {
		i++
	}
	if i == len(k.peers) {
		k.peers = append(k.peers, peerCount{node: node, win: c.Window, cur: c.Count})
		return
	}
	p := &k.peers[i]
	switch {
	case c.Window == p.win:
		p.cur = max(p.cur, c.Count)
	case c.Window == p.win-w:
		p.prev = max(p.prev, c.Count)
	case c.Window == p.win+w:
		p.prev, p.cur, p.win = p.cur, c.Count, c.Window
	case c.Window > p.win:
		p.prev, p.cur, p.win = 0, c.Count, c.Window
	}
}

// Sweep forgets keys whose own and peers' counts are all older than the
// previous window: they no longer weigh in any estimate.
func (l *Limiter) Sweep() {
	now := l.now().UnixMilli()
	for i := range l.shard {
		sh := &l.shard[i]
		sh.mu.Lock()
		for ek, k := range sh.m {
			k.mu.Lock()
			w := k.lim.window.Load()
			old := now - now%w - w
			stale := k.win < old // unreported counts that old matter to nobody
			for _, p := range k.peers {
				stale = stale && p.win < old
			}
			if stale {
				k.gone = true
				delete(sh.m, ek)
				l.keys.Add(-1)
				k.lim.tracked.Add(-1)
			}
			k.mu.Unlock()
		}
		sh.mu.Unlock()
	}
}

// Stats are the limiter's counters.
type Stats struct {
	Keys      int64  // keys tracked
	Evictions uint64 // keys evicted at MaxKeys
	Reported  uint64 // counts handed to Report's callers
	Merged    uint64 // peer counts applied
	Unknown   uint64 // peer counts of limits this node does not have
	// RemovedLimits and RemovedKeys count the limits Remove forgot and the
	// keys it freed with them.
	RemovedLimits, RemovedKeys uint64
}

// Stats returns the limiter's counters.
func (l *Limiter) Stats() Stats {
	return Stats{Keys: l.keys.Load(), Evictions: l.evictions.Load(), Reported: l.reported.Load(),
		Merged: l.merged.Load(), Unknown: l.unknown.Load(),
		RemovedLimits: l.removedLimits.Load(), RemovedKeys: l.removedKeys.Load()}
}

// LimitStats are one limit's counters.
type LimitStats struct {
	Name                     string
	Admitted, Rejected       int64
	TrackedKeys, EvictedKeys int64
}

// Stats returns lm's counters.
func (lm *Limit) Stats() LimitStats {
	return LimitStats{Name: lm.name, Admitted: lm.admitted.Load(), Rejected: lm.rejected.Load(),
		TrackedKeys: lm.tracked.Load(), EvictedKeys: lm.evicted.Load()}
}
