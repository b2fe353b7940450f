package clusterstate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newStore(t *testing.T, origin uint64, c *clock, zones ...ZoneConfig) (*Store, *[]Entry) {
	t.Helper()
	if len(zones) == 0 {
		zones = []ZoneConfig{{Name: "z"}}
	}
	var mu sync.Mutex
	var pub []Entry
	s, err := New(Config{Zones: zones, Origin: origin, Now: c.now, Publish: func(e Entry) {
		mu.Lock()
		pub = append(pub, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s, &pub
}

func dump(s *Store) []Entry {
	var out []Entry
	s.Range(func(e Entry) bool { out = append(out, e); return true })
	sort.Slice(out, func(i, j int) bool { return out[i].Zone+out[i].Key < out[j].Zone+out[j].Key })
	return out
}

func TestPutGetDeletePublish(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	s, pub := newStore(t, 7, c)
	e, err := s.Put("z", "k", []byte("v"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if e.Origin != 7 || e.Version != c.now().UnixNano() || e.Expires != c.now().Add(time.Minute).UnixNano() {
		t.Fatalf("entry %+v", e)
	}
	if got, ok, _ := s.Get("z", "k"); !ok || string(got.Value) != "v" {
		t.Fatalf("get: %+v %v", got, ok)
	}
	c.add(time.Nanosecond)
	if _, err := s.Delete("z", "k", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get("z", "k"); ok {
		t.Fatal("deleted key still there")
	}
	if len(*pub) != 2 || !(*pub)[1].Deleted {
		t.Fatalf("published %+v", *pub)
	}
	if _, _, err := s.Get("nope", "k"); !errors.Is(err, ErrNoZone) {
		t.Fatalf("unknown zone: %v", err)
	}
	for _, bad := range []struct {
		k   string
		v   []byte
		ttl time.Duration
	}{{"", nil, time.Second}, {string(make([]byte, MaxKeyLen+1)), nil, time.Second},
		{"k", make([]byte, MaxValueLen+1), time.Second}, {"k", nil, 0}} {
		if _, err := s.Put("z", bad.k, bad.v, bad.ttl); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(%d-byte key, %d-byte value, %v): %v", len(bad.k), len(bad.v), bad.ttl, err)
		}
	}
}

// Replicas that see the same writes in any order hold the same entries:
// the highest (Version, Origin) wins, deletions included, and a tombstone
// keeps an older write from coming back.
func TestMergeOrderIndependent(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	exp := c.now().Add(time.Hour).UnixNano()
	r := rand.New(rand.NewPCG(1, 2))
	var writes []Entry
	for i := range 400 {
		e := Entry{Zone: "z", Key: fmt.Sprint("k", r.IntN(20)), Version: int64(r.IntN(50)),
			Origin: uint64(r.IntN(3)), Expires: exp}
		if e.Deleted = r.IntN(4) == 0; !e.Deleted {
			e.Value = []byte(fmt.Sprint("v", i))
		}
		writes = append(writes, e)
	}
	ref, _ := newStore(t, 0, c)
	ref.Merge(writes)
	want := dump(ref)
	for range 20 {
		s, _ := newStore(t, 0, c)
		perm := append([]Entry(nil), writes...)
		r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		for len(perm) > 0 { // in batches of random sizes, like frames
			n := min(len(perm), 1+r.IntN(30))
			s.Merge(perm[:n])
			perm = perm[n:]
		}
		if got := dump(s); !reflect.DeepEqual(got, want) {
			t.Fatalf("order changed the result:\n got %v\nwant %v", got, want)
		}
	}
	// An older write after the tombstone of its key stays out.
	s, _ := newStore(t, 0, c)
	s.Merge([]Entry{{Zone: "z", Key: "x", Deleted: true, Version: 10, Expires: exp}})
	s.Merge([]Entry{{Zone: "z", Key: "x", Value: []byte("old"), Version: 9, Expires: exp}})
	if _, ok, _ := s.Get("z", "x"); ok {
		t.Fatal("a write older than the deletion came back")
	}
	if st := s.Stats()[0]; st.Stale != 1 || st.Tombs != 1 || st.Records != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Entries of unknown zones or over the limits are refused and counted, not
// stored.
func TestMergeRefuses(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	s, _ := newStore(t, 0, c)
	exp := c.now().Add(time.Hour).UnixNano()
	applied, refused := s.Merge([]Entry{
		{Zone: "other", Key: "k", Version: 1, Expires: exp},
		{Zone: "z", Key: "", Version: 1, Expires: exp},
		{Zone: "z", Key: "d", Deleted: true, Value: []byte("x"), Version: 1, Expires: exp},
		{Zone: "z", Key: "ok", Version: 1, Expires: exp},
		{Zone: "z", Key: "expired", Version: 1, Expires: c.now().UnixNano()},
	})
	if applied != 1 || refused != 3 {
		t.Fatalf("applied %d refused %d", applied, refused)
	}
}

// A zone never holds more than its budget: the soonest-expiring entries
// go first, and every eviction is counted.
func TestZoneBoundedEvictions(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	const budget = 100 * (entryOverhead + 10)
	s, _ := newStore(t, 0, c, ZoneConfig{Name: "z", MaxBytes: budget})
	for i := range 1000 {
		// TTLs grow with i: the oldest puts expire first.
		if _, err := s.Put("z", fmt.Sprintf("key-%04d", i), []byte("vv"), time.Duration(i+1)*time.Second); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats()[0]; st.Bytes > budget {
			t.Fatalf("zone at %d bytes, budget %d", st.Bytes, budget)
		}
	}
	st := s.Stats()[0]
	if st.Records != 100 || st.Evictions != 900 {
		t.Fatalf("stats %+v, want 100 records and 900 evictions", st)
	}
	if _, ok, _ := s.Get("z", "key-0999"); !ok {
		t.Fatal("the latest-expiring entry was evicted")
	}
	if _, ok, _ := s.Get("z", "key-0899"); ok {
		t.Fatal("a soon-expiring entry survived")
	}
}

// Entries expire at their TTL: Get stops returning them at once, Sweep
// frees their memory, Range leaves them out.
func TestExpiry(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	s, _ := newStore(t, 0, c)
	s.Put("z", "short", []byte("v"), time.Second)
	s.Put("z", "long", []byte("v"), time.Hour)
	c.add(time.Second)
	if _, ok, _ := s.Get("z", "short"); ok {
		t.Fatal("expired entry returned")
	}
	if got := dump(s); len(got) != 1 || got[0].Key != "long" {
		t.Fatalf("range %v", got)
	}
	s.Sweep()
	if st := s.Stats()[0]; st.Records != 1 || st.Bytes != int64(len("long")+1+entryOverhead) {
		t.Fatalf("after sweep %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, time.Millisecond); close(done) }()
	cancel()
	<-done
}

func TestConcurrentUse(t *testing.T) {
	s, err := New(Config{Zones: []ZoneConfig{{Name: "a"}, {Name: "b", MaxBytes: 10 << 10}}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				z := []string{"a", "b"}[i%2]
				k := fmt.Sprint(g, "-", i%50)
				s.Put(z, k, []byte("v"), time.Minute)
				s.Get(z, k)
				if i%7 == 0 {
					s.Delete(z, k, time.Minute)
				}
				if i%50 == 0 {
					s.Range(func(Entry) bool { return true })
					s.Stats()
					s.Sweep()
				}
			}
		})
	}
	wg.Wait()
	if _, err := New(Config{Zones: []ZoneConfig{{Name: "a"}, {Name: "a"}}}); err == nil {
		t.Fatal("duplicate zone accepted")
	}
}

// Changed is closed by every kind of change of its zone (a local write, a
// merged one, a deletion, a swept expiry) and by nothing else: a write
// to another zone, a stale merge or a sweep that frees only tombstones
// leave it open.
func TestChangedFollowsEveryChange(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	s, _ := newStore(t, 1, c, ZoneConfig{Name: "a"}, ZoneConfig{Name: "b"})
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	step := func(what string, want bool, fn func()) {
		t.Helper()
		ch, err := s.Changed("a")
		if err != nil {
			t.Fatal(err)
		}
		fn()
		if got := closed(ch); got != want {
			t.Fatalf("%s: channel closed %v, want %v", what, got, want)
		}
	}
	step("local put", true, func() { s.Put("a", "k", []byte("v"), time.Second) })
	step("put to another zone", false, func() { s.Put("b", "k", []byte("v"), time.Second) })
	step("merge", true, func() {
		s.Merge([]Entry{{Zone: "a", Key: "m", Value: []byte("v"), Version: 1, Origin: 2, Expires: c.now().Add(time.Hour).UnixNano()}})
	})
	step("stale merge", false, func() {
		s.Merge([]Entry{{Zone: "a", Key: "m", Value: []byte("old"), Version: 0, Origin: 2, Expires: c.now().Add(time.Hour).UnixNano()}})
	})
	step("delete", true, func() { s.Delete("a", "m", time.Second) })
	c.add(2 * time.Second) // "k" expires; the tombstone of "m" too
	step("sweep of an expired entry", true, s.Sweep)
	step("nothing left to sweep", false, s.Sweep)
	s.Delete("a", "t", time.Second)
	c.add(2 * time.Second)
	step("sweep of a tombstone only", false, s.Sweep)
	if _, err := s.Changed("nope"); !errors.Is(err, ErrNoZone) {
		t.Fatalf("unknown zone: %v", err)
	}
}
