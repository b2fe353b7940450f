package clusterstate

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Config configures a Store.
type Config struct {
	// Zones are the zones the store holds; entries of other zones (from
	// the API or from peers) are refused.
	Zones []ZoneConfig
	// Origin is this node's id (mesh.NodeID); it breaks ties of writes
	// made in the same nanosecond on two nodes.
	Origin uint64
	// Publish, if set, is called with every entry written locally (Put,
	// Delete) once it is applied, to replicate it. It must not block.
	Publish func(Entry)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store is a node's set of zones. Its methods are safe for concurrent
// use. Writes made here and writes merged from peers (Merge) follow the
// same rule: per key, the highest (Version, Origin) wins, so every replica
// that has seen the same writes holds the same entries, whatever their
// order of arrival.
type Store struct {
	cfg   Config
	last  atomic.Int64     // version of the latest local write
	zones map[string]*zone // fixed after New
	names []string
}

// New builds a Store with cfg's zones.
func New(cfg Config) (*Store, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{cfg: cfg, zones: make(map[string]*zone, len(cfg.Zones))}
	for _, zc := range cfg.Zones {
		if _, dup := s.zones[zc.Name]; dup {
			return nil, fmt.Errorf("clusterstate: zone %q configured twice", zc.Name)
		}
		z, err := newZone(zc)
		if err != nil {
			return nil, err
		}
		s.zones[zc.Name] = z
		s.names = append(s.names, zc.Name)
	}
	slices.Sort(s.names)
	return s, nil
}

// Zones returns the zone names, sorted.
func (s *Store) Zones() []string { return slices.Clone(s.names) }

func (s *Store) zone(name string) (*zone, error) {
	z := s.zones[name]
	if z == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoZone, name)
	}
	return z, nil
}

// validate checks e's fields against the limits the wire carries.
func validate(e *Entry) error {
	switch {
	case e.Key == "" || len(e.Key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes (1..%d)", ErrInvalid, len(e.Key), MaxKeyLen)
	case len(e.Value) > MaxValueLen:
		return fmt.Errorf("%w: value of %d bytes (at most %d)", ErrInvalid, len(e.Value), MaxValueLen)
	case e.Deleted && len(e.Value) != 0:
		return fmt.Errorf("%w: deletion with a value", ErrInvalid)
	}
	return nil
}

// Put writes value under key in zone for ttl (> 0) and publishes it. The
// store owns value afterwards.
func (s *Store) Put(zone, key string, value []byte, ttl time.Duration) (Entry, error) {
	return s.write(zone, Entry{Key: key, Value: value}, ttl)
}

// Delete deletes key in zone everywhere: a tombstone is written, kept for
// ttl (> 0, at least as long as the writes it must outlive), and published.
func (s *Store) Delete(zone, key string, ttl time.Duration) (Entry, error) {
	return s.write(zone, Entry{Key: key, Deleted: true}, ttl)
}

func (s *Store) write(zone string, e Entry, ttl time.Duration) (Entry, error) {
	z, err := s.zone(zone)
	if err != nil {
		return Entry{}, err
	}
	if ttl <= 0 {
		return Entry{}, fmt.Errorf("%w: ttl %v", ErrInvalid, ttl)
	}
	now := s.cfg.Now().UnixNano()
	e.Zone, e.Version, e.Origin, e.Expires = zone, s.version(now), s.cfg.Origin, now+int64(ttl)
	if err := validate(&e); err != nil {
		return Entry{}, err
	}
	if !z.apply(e, now) {
		// Only a newer write (a clock ahead of ours) keeps it from
		// applying; ours lost under last-writer-wins.
		return Entry{}, fmt.Errorf("clusterstate: %s/%s has a newer write", zone, e.Key)
	}
	if s.cfg.Publish != nil {
		s.cfg.Publish(e)
	}
	return e, nil
}

// version returns a version for a local write at now, strictly greater
// than every earlier local one (clocks may not advance between two writes).
func (s *Store) version(now int64) int64 {
	for {
		last := s.last.Load()
		v := max(now, last+1)
		if s.last.CompareAndSwap(last, v) {
			return v
		}
	}
}

// Merge applies entries replicated from peers; it returns how many changed
// the store. Entries of unknown zones or over the limits are skipped and
// counted in refused.
func (s *Store) Merge(es []Entry) (applied, refused int) {
	now := s.cfg.Now().UnixNano()
	for i := range es {
		e := &es[i]
		z := s.zones[e.Zone]
		if z == nil || validate(e) != nil {
			refused++
			continue
		}
		if z.apply(*e, now) {
			applied++
		}
	}
	return applied, refused
}

// Get returns the live value of key in zone, or false (absent, deleted or
// expired). The value is shared: callers must not modify it.
func (s *Store) Get(zone, key string) (Entry, bool, error) {
	z, err := s.zone(zone)
	if err != nil {
		return Entry{}, false, err
	}
	e, ok := z.get(key, s.cfg.Now().UnixNano())
	return e, ok, nil
}

// Range calls fn for every unexpired entry of every zone, tombstones
// included (a snapshot for a joining peer), until fn returns false. It
// holds one zone's read lock at a time.
func (s *Store) Range(fn func(Entry) bool) {
	now := s.cfg.Now().UnixNano()
	for _, name := range s.names {
		if !s.zones[name].each(now, fn) {
			return
		}
	}
}

// RangeZone calls fn for the live entries of one zone (tombstones
// excluded) until fn returns false.
func (s *Store) RangeZone(zone string, fn func(Entry) bool) error {
	z, err := s.zone(zone)
	if err != nil {
		return err
	}
	z.each(s.cfg.Now().UnixNano(), func(e Entry) bool { return e.Deleted || fn(e) })
	return nil
}

func (z *zone) each(now int64, fn func(Entry) bool) bool {
	z.mu.RLock()
	defer z.mu.RUnlock()
	for _, it := range z.items {
		if it.e.Expires > now && !fn(it.e) {
			return false
		}
	}
	return true
}

// Changed returns a channel that the next change of zone closes: a write
// or deletion applied (local or merged from a peer), an eviction, or a
// live entry's expiry swept (within a second of it, see Run). Take it
// before reading the zone it is meant to follow:
//
//	ch, _ := s.Changed("deny")
//	s.RangeZone("deny", ...) // then <-ch and read again
//
// A burst of changes may close one channel.
func (s *Store) Changed(zone string) (<-chan struct{}, error) {
	z, err := s.zone(zone)
	if err != nil {
		return nil, err
	}
	return z.changedCh(), nil
}

// Stats returns every zone's figures, sorted by name.
func (s *Store) Stats() []ZoneStats {
	out := make([]ZoneStats, 0, len(s.names))
	for _, n := range s.names {
		out = append(out, s.zones[n].stats())
	}
	return out
}

// Sweep removes what expired by now.
func (s *Store) Sweep() {
	now := s.cfg.Now().UnixNano()
	for _, z := range s.zones {
		z.sweep(now)
	}
}

// Run sweeps every interval until ctx is done.
func (s *Store) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// ZoneView is one zone of a Store, for a caller that uses only that zone
// on a hot path (sticky learn): Get skips the zone-name lookup and does
// not allocate. Safe for concurrent use.
type ZoneView struct {
	s *Store
	z *zone
}

// View returns the view of zone.
func (s *Store) View(zone string) (*ZoneView, error) {
	z, err := s.zone(zone)
	if err != nil {
		return nil, err
	}
	return &ZoneView{s: s, z: z}, nil
}

// Get returns the live entry of key (not deleted, not expired), or false.
// key is not retained, so a caller may pass a string that aliases a
// buffer it reuses. The entry's Value is shared: callers must not modify
// it. Get does not allocate.
func (v *ZoneView) Get(key string) (Entry, bool) {
	return v.z.get(key, v.s.cfg.Now().UnixNano())
}

// Put writes value under key for ttl and publishes it, as Store.Put does.
func (v *ZoneView) Put(key string, value []byte, ttl time.Duration) error {
	_, err := v.s.write(v.z.cfg.Name, Entry{Key: key, Value: value}, ttl)
	return err
}
