package clusterstate

import (
	"container/heap"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ZoneConfig configures one zone.
type ZoneConfig struct {
	// Name is the zone's name (1..MaxZoneLen bytes); required.
	Name string
	// MaxBytes bounds the zone's memory (Entry sizes, tombstones
	// included); 0 means 16 MiB. Over it, the soonest-expiring entries are
	// evicted and counted.
	MaxBytes int64
}

// Errors of Store methods; test with errors.Is.
var (
	ErrNoZone  = errors.New("clusterstate: no such zone")
	ErrInvalid = errors.New("clusterstate: invalid entry")
)

// ZoneStats is a point-in-time view of one zone (zone_sync's records and
// memory figures).
type ZoneStats struct {
	Name      string
	Records   int   // live entries, tombstones excluded
	Tombs     int   // tombstones kept against late older writes
	Bytes     int64 // memory charged to the zone
	Evictions uint64
	// Stale counts writes refused because the zone held a newer one for
	// their key (last writer wins).
	Stale uint64
}

// zone is one table: a map, a min-heap on Expires for eviction and
// sweeping, and its byte count. Guarded by mu.
type zone struct {
	cfg ZoneConfig

	mu    sync.RWMutex
	items map[string]*item
	exp   expHeap
	bytes int64
	tombs int

	evictions atomic.Uint64
	stale     atomic.Uint64

	chMu    sync.Mutex
	changed chan struct{} // closed by the next change; nil until asked for
}

type item struct {
	e   Entry
	idx int // position in the heap
}

func newZone(cfg ZoneConfig) (*zone, error) {
	if cfg.Name == "" || len(cfg.Name) > MaxZoneLen {
		return nil, fmt.Errorf("%w: zone name %q", ErrInvalid, cfg.Name)
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 16 << 20
	}
	return &zone{cfg: cfg, items: make(map[string]*item)}, nil
}

// apply merges e (already validated) at now and reports whether it
// changed the zone.
func (z *zone) apply(e Entry, now int64) bool {
	if e.Expires <= now {
		return false // already gone (a late write of an expired entry)
	}
	if !z.applyLocked(e) {
		return false
	}
	z.notify()
	return true
}

func (z *zone) applyLocked(e Entry) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	if it, ok := z.items[e.Key]; ok {
		if !e.newer(&it.e) {
			z.stale.Add(1)
			return false
		}
		z.remove(it)
	}
	it := &item{e: e}
	z.items[e.Key] = it
	heap.Push(&z.exp, it)
	z.bytes += e.size()
	if e.Deleted {
		z.tombs++
	}
	for z.bytes > z.cfg.MaxBytes && len(z.exp) > 1 {
		z.remove(z.exp[0])
		z.evictions.Add(1)
	}
	return true
}

// remove drops it from the map, the heap and the counts; mu is held.
func (z *zone) remove(it *item) {
	heap.Remove(&z.exp, it.idx)
	delete(z.items, it.e.Key)
	z.bytes -= it.e.size()
	if it.e.Deleted {
		z.tombs--
	}
}

// sweep removes entries and tombstones expired at now; a removal of a
// live entry (not a tombstone) wakes the zone's watchers.
func (z *zone) sweep(now int64) {
	z.mu.Lock()
	live := 0
	for len(z.exp) > 0 && z.exp[0].e.Expires <= now {
		if !z.exp[0].e.Deleted {
			live++
		}
		z.remove(z.exp[0])
	}
	z.mu.Unlock()
	if live > 0 {
		z.notify()
	}
}

// changedCh returns the channel the zone's next change closes.
func (z *zone) changedCh() <-chan struct{} {
	z.chMu.Lock()
	defer z.chMu.Unlock()
	if z.changed == nil {
		z.changed = make(chan struct{})
	}
	return z.changed
}

// notify wakes everyone waiting on changedCh.
func (z *zone) notify() {
	z.chMu.Lock()
	if z.changed != nil {
		close(z.changed)
		z.changed = nil
	}
	z.chMu.Unlock()
}

func (z *zone) get(key string, now int64) (Entry, bool) {
	z.mu.RLock()
	defer z.mu.RUnlock()
	it, ok := z.items[key]
	if !ok || it.e.Deleted || it.e.Expires <= now {
		return Entry{}, false
	}
	return it.e, true
}

func (z *zone) stats() ZoneStats {
	z.mu.RLock()
	defer z.mu.RUnlock()
	return ZoneStats{Name: z.cfg.Name, Records: len(z.items) - z.tombs, Tombs: z.tombs,
		Bytes: z.bytes, Evictions: z.evictions.Load(), Stale: z.stale.Load()}
}

// expHeap orders items by Expires (soonest first).
type expHeap []*item

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].e.Expires < h[j].e.Expires }
func (h expHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *expHeap) Push(x any) {
	it := x.(*item)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *expHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
