// Package store holds TLS session records in memory: a sharded map with a
// TTL per record, a byte budget enforced by evicting the soonest-expiring
// records, and tombstones so a revoked id cannot be resurrected by a late
// replica message.
//
// Tombstones are never evicted: the budget only ever evicts live records,
// and a tombstone stays until the expiry it was given (that of the session
// it revokes), so no amount of memory pressure lets a late insert or
// snapshot record bring a revoked session back. Tombstones count towards
// the budget and so push records out, not the other way round.
//
// A Store is safe for concurrent use. Get does not allocate. Each shard has
// its own lock and counters on cache lines of its own, so Puts to different
// shards share no written memory.
package store

import (
	"container/heap"
	"context"
	"encoding/binary"
	"sync"
	"time"
	"unsafe"
)

// NumShards is the number of independently locked shards. Keys are random,
// so they spread evenly.
const NumShards = 64

// Key identifies a session: the 128 random bits of a session id.
type Key [16]byte

// Binding is the hash of what a session was issued for (SNI name,
// certificate, policy). A session only resumes under the same binding.
type Binding [32]byte

// Kind says what a record's State holds. Values are append-only: they
// travel in the mesh protocol.
type Kind uint8

const (
	// KindTLSState is a crypto/tls SessionState (stateful TLS 1.2 tickets
	// and TLS 1.3 PSKs, SessionState.Bytes).
	KindTLSState Kind = 0
	// KindTLS12SessionID was a TLS 1.2 session resumed by session ID,
	// serialized by internal/tls12. It is no longer issued, and refused
	// from peers: nothing in it proves that its key belongs to its state.
	KindTLS12SessionID Kind = 1
	// KindTLS12Session is a TLS 1.2 session resumed by session ID: the
	// 32-byte session id, then the state serialized by internal/tls12.
	// The id (MAC'd, public) lets every replica check the record's key,
	// origin and expiry.
	KindTLS12Session Kind = 2
)

// Record is one session. The zero Record is not valid (Expires must be set).
type Record struct {
	Key Key
	// Kind is what State holds; a session only resumes as its own kind.
	Kind    Kind
	Binding Binding
	// Origin is the node id of the issuing node.
	Origin uint64
	// Created is when the issuing node stored it (unix nanoseconds); peers
	// use it to measure replication latency.
	Created int64
	// Expires is the expiry (unix nanoseconds).
	Expires int64
	// State is the serialized tls.SessionState. It is secret. After Put the
	// store owns it and nobody may modify it; Get returns it shared, read-only.
	State []byte
}

// Status is the outcome of a Get.
type Status uint8

const (
	// Found means the record is present and not expired.
	Found Status = iota
	// Missing means no record (or it was evicted).
	Missing
	// Expired means the record is present but past its expiry.
	Expired
	// Revoked means the id was deleted (tombstone).
	Revoked
)

// String returns a metric-label friendly name.
func (s Status) String() string {
	switch s {
	case Found:
		return "found"
	case Missing:
		return "unknown_id"
	case Expired:
		return "expired"
	case Revoked:
		return "revoked"
	}
	return "invalid"
}

// recordOverhead is the accounted size of a record beyond its state bytes:
// the entry struct, the map slot and the heap slot. It is an estimate used
// for the byte budget; BenchmarkStoreMemory measures the real figure.
const recordOverhead = 160

// entry is what a shard keeps per key. A tombstone has tomb set and no state.
type entry struct {
	binding Binding
	kind    Kind
	origin  uint64
	created int64
	expires int64
	state   []byte
	key     Key
	heapIdx int32
	tomb    bool
}

func (e *entry) size() int64 { return int64(len(e.state)) + recordOverhead }

// shardState is one shard's map, heaps and counters, guarded by mu.
type shardState struct {
	mu      sync.RWMutex
	m       map[Key]*entry
	recs    expiryHeap // live records: expiry and eviction order
	tombs   expiryHeap // tombstones: expiry only, never evicted
	bytes   int64
	budget  int64
	evicted uint64
	expired uint64
}

// cacheLine is the size the shards are padded by: 64 bytes on the CPUs we
// run on. Go does not align the shard array to a line, so each shard ends
// with at least one whole line of padding: no line then holds written
// fields of two shards, whatever the array's alignment.
const cacheLine = 64

type shard struct {
	shardState
	_ [cacheLine + (cacheLine-unsafe.Sizeof(shardState{})%cacheLine)%cacheLine]byte
}

// Store is the sharded session store. Create it with New.
type Store struct {
	shards [NumShards]shard
}

// New returns a store that keeps at most about budgetBytes of records
// (state bytes plus a fixed per-record overhead). budgetBytes <= 0 means
// 256 MiB. The budget is split evenly between shards; eviction removes the
// soonest-expiring record of the shard that is over budget.
func New(budgetBytes int64) *Store {
	if budgetBytes <= 0 {
		budgetBytes = 256 << 20
	}
	s := &Store{}
	per := budgetBytes / NumShards
	if per < recordOverhead*4 {
		per = recordOverhead * 4
	}
	for i := range s.shards {
		s.shards[i].m = make(map[Key]*entry)
		s.shards[i].budget = per
	}
	return s
}

func (s *Store) shard(k Key) *shard {
	return &s.shards[binary.LittleEndian.Uint64(k[:8])%NumShards]
}

// Put inserts r, taking ownership of r.State. It returns false (and stores
// nothing) when the key is revoked, r is already expired at now, or a record
// with the same key exists (records are immutable; first writer wins).
func (s *Store) Put(r Record, now time.Time) bool {
	if r.Expires <= now.UnixNano() {
		return false
	}
	sh := s.shard(r.Key)
	e := &entry{binding: r.Binding, kind: r.Kind, origin: r.Origin, created: r.Created,
		expires: r.Expires, state: r.State, key: r.Key}
	sh.mu.Lock()
	if old, ok := sh.m[r.Key]; ok {
		if old.tomb || old.expires > now.UnixNano() {
			sh.mu.Unlock()
			return false
		}
		sh.removeLocked(old)
	}
	sh.addLocked(e)
	sh.evictLocked()
	sh.mu.Unlock()
	return true
}

// Get looks k up. On Found the returned record's State is shared with the
// store and must not be modified. Get does not allocate.
func (s *Store) Get(k Key, now time.Time) (Record, Status) {
	sh := s.shard(k)
	sh.mu.RLock()
	e, ok := sh.m[k]
	if !ok {
		sh.mu.RUnlock()
		return Record{}, Missing
	}
	if e.tomb {
		sh.mu.RUnlock()
		return Record{}, Revoked
	}
	r := Record{Key: k, Kind: e.kind, Binding: e.binding, Origin: e.origin, Created: e.created,
		Expires: e.expires, State: e.state}
	sh.mu.RUnlock()
	if r.Expires <= now.UnixNano() {
		return Record{}, Expired
	}
	return r, Found
}

// Delete revokes k: any record is dropped and a tombstone kept until
// expires (unix nanoseconds), so later Puts of k are refused. It returns
// true if a live record was removed.
func (s *Store) Delete(k Key, expires int64, now time.Time) bool {
	if expires <= now.UnixNano() {
		expires = now.Add(time.Minute).UnixNano()
	}
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	removed := false
	if old, ok := sh.m[k]; ok {
		if old.tomb {
			return false
		}
		removed = true
		sh.removeLocked(old)
	}
	sh.addLocked(&entry{key: k, expires: expires, tomb: true})
	sh.evictLocked()
	return removed
}

func (sh *shard) heapOf(e *entry) *expiryHeap {
	if e.tomb {
		return &sh.tombs
	}
	return &sh.recs
}

func (sh *shard) addLocked(e *entry) {
	sh.m[e.key] = e
	heap.Push(sh.heapOf(e), e)
	sh.bytes += e.size()
}

func (sh *shard) removeLocked(e *entry) {
	delete(sh.m, e.key)
	heap.Remove(sh.heapOf(e), int(e.heapIdx))
	sh.bytes -= e.size()
}

// evictLocked removes the soonest-expiring live records until the shard is
// within its budget or has no record left. Tombstones stay.
func (sh *shard) evictLocked() {
	for sh.bytes > sh.budget && len(sh.recs) > 0 {
		sh.removeLocked(sh.recs[0])
		sh.evicted++
	}
}

// sweepLocked removes what expired at t from h and returns how many.
func (sh *shard) sweepLocked(h *expiryHeap, t int64) int {
	n := 0
	for len(*h) > 0 && (*h)[0].expires <= t {
		sh.removeLocked((*h)[0])
		n++
	}
	return n
}

// Sweep removes every record and tombstone expired at now and returns how
// many it removed.
func (s *Store) Sweep(now time.Time) int {
	n := 0
	t := now.UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		k := sh.sweepLocked(&sh.recs, t) + sh.sweepLocked(&sh.tombs, t)
		sh.expired += uint64(k)
		sh.mu.Unlock()
		n += k
	}
	return n
}

// Run sweeps every interval (1 s if interval <= 0) until ctx is done.
func (s *Store) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.Sweep(now)
		}
	}
}

// Range calls fn for every live record, shard by shard, until fn returns
// false. Records are copied out of a shard before fn runs, so fn may call
// other Store methods. State slices are shared and read-only.
func (s *Store) Range(now time.Time, fn func(Record) bool) {
	t := now.UnixNano()
	var buf []Record
	for i := range s.shards {
		sh := &s.shards[i]
		buf = buf[:0]
		sh.mu.RLock()
		for k, e := range sh.m {
			if !e.tomb && e.expires > t {
				buf = append(buf, Record{Key: k, Kind: e.kind, Binding: e.binding, Origin: e.origin,
					Created: e.created, Expires: e.expires, State: e.state})
			}
		}
		sh.mu.RUnlock()
		for _, r := range buf {
			if !fn(r) {
				return
			}
		}
	}
}

// RangeTombstones calls fn with the key and expiry of every tombstone not
// expired at now, shard by shard, until fn returns false. Like Range, it
// copies a shard's tombstones out before calling fn.
func (s *Store) RangeTombstones(now time.Time, fn func(k Key, expires int64) bool) {
	t := now.UnixNano()
	type tomb struct {
		k   Key
		exp int64
	}
	var buf []tomb
	for i := range s.shards {
		sh := &s.shards[i]
		buf = buf[:0]
		sh.mu.RLock()
		for _, e := range sh.tombs {
			if e.expires > t {
				buf = append(buf, tomb{e.key, e.expires})
			}
		}
		sh.mu.RUnlock()
		for _, tb := range buf {
			if !fn(tb.k, tb.exp) {
				return
			}
		}
	}
}

// Stats is a point-in-time view of the store counters.
type Stats struct {
	Records    int64  `json:"records"`
	Tombstones int64  `json:"tombstones"`
	Bytes      int64  `json:"bytes"`
	Evicted    uint64 `json:"evicted"`
	Expired    uint64 `json:"expired"`
}

// Stats returns the current counters, summed over the shards (it takes
// each shard's read lock in turn: for scrapes and status, not hot paths).
func (s *Store) Stats() Stats {
	var st Stats
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		st.Records += int64(len(sh.recs))
		st.Tombstones += int64(len(sh.tombs))
		st.Bytes += sh.bytes
		st.Evicted += sh.evicted
		st.Expired += sh.expired
		sh.mu.RUnlock()
	}
	return st
}

// Len returns the number of live (not revoked) records, expired ones not
// yet swept included.
func (s *Store) Len() int { return int(s.Stats().Records) }

// expiryHeap is a min-heap of entries by expiry; entries track their index.
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = int32(i)
	h[j].heapIdx = int32(j)
}
func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = int32(len(*h))
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}
