package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func key(i uint64) Key {
	var k Key
	binary.LittleEndian.PutUint64(k[:8], i*0x9E3779B97F4A7C15)
	binary.LittleEndian.PutUint64(k[8:], i)
	return k
}

func rec(i uint64, ttl time.Duration, size int) Record {
	return Record{Key: key(i), Origin: 7, Created: t0.UnixNano(),
		Expires: t0.Add(ttl).UnixNano(), State: make([]byte, size)}
}

func TestPutGet(t *testing.T) {
	tests := []struct {
		name string
		put  []Record
		get  Key
		at   time.Time
		want Status
	}{
		{"found", []Record{rec(1, time.Minute, 10)}, key(1), t0, Found},
		{"missing", []Record{rec(1, time.Minute, 10)}, key(2), t0, Missing},
		{"expired", []Record{rec(1, time.Minute, 10)}, key(1), t0.Add(2 * time.Minute), Expired},
		{"empty", nil, key(1), t0, Missing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(1 << 20)
			for _, r := range tc.put {
				if !s.Put(r, t0) {
					t.Fatalf("Put refused")
				}
			}
			r, st := s.Get(tc.get, tc.at)
			if st != tc.want {
				t.Fatalf("status %v, want %v", st, tc.want)
			}
			if st == Found && (r.Origin != 7 || len(r.State) != 10) {
				t.Fatalf("bad record %+v", r)
			}
		})
	}
}

func TestPutRefusals(t *testing.T) {
	s := New(1 << 20)
	if s.Put(rec(1, -time.Second, 1), t0) {
		t.Fatal("expired record accepted")
	}
	if !s.Put(rec(2, time.Minute, 1), t0) || s.Put(rec(2, time.Minute, 2), t0) {
		t.Fatal("duplicate handling wrong")
	}
	if !s.Delete(key(2), t0.Add(time.Minute).UnixNano(), t0) {
		t.Fatal("Delete did not remove")
	}
	if _, st := s.Get(key(2), t0); st != Revoked {
		t.Fatalf("after delete: %v", st)
	}
	if s.Put(rec(2, time.Minute, 1), t0) {
		t.Fatal("revoked key resurrected")
	}
	// A tombstone for an unknown key also blocks a late insert.
	s.Delete(key(3), 0, t0)
	if s.Put(rec(3, time.Minute, 1), t0) {
		t.Fatal("pre-revoked key accepted")
	}
	// Expired records may be replaced.
	s.Put(rec(4, time.Second, 1), t0)
	if !s.Put(rec(4, time.Hour, 1), t0.Add(2*time.Second)) {
		t.Fatal("expired record not replaceable")
	}
	if st := s.Stats(); st.Records != 1 || st.Tombstones != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEvictsSoonestExpiring(t *testing.T) {
	s := New(NumShards * 4 * (recordOverhead + 100))
	// Fill one shard beyond its budget: keys with the same low 8 bytes mod 64.
	var keys []Key
	for i := 0; len(keys) < 10; i++ {
		k := key(uint64(i))
		if binary.LittleEndian.Uint64(k[:8])%NumShards == 0 {
			keys = append(keys, k)
		}
	}
	for i, k := range keys {
		r := Record{Key: k, Expires: t0.Add(time.Duration(100-i) * time.Second).UnixNano(), State: make([]byte, 100)}
		s.Put(r, t0)
	}
	// Budget is 4 records per shard: the 4 latest-expiring survive, i.e. the first 4 keys.
	for i, k := range keys {
		_, st := s.Get(k, t0)
		if (i < 4) != (st == Found) {
			t.Errorf("key %d status %v", i, st)
		}
	}
	if s.Stats().Evicted != 6 {
		t.Fatalf("evicted %d", s.Stats().Evicted)
	}
}

func TestSweepAndRun(t *testing.T) {
	s := New(1 << 20)
	for i := uint64(0); i < 100; i++ {
		s.Put(rec(i, time.Duration(i+1)*time.Second, 8), t0)
	}
	s.Delete(key(1000), t0.Add(5*time.Second).UnixNano(), t0)
	if n := s.Sweep(t0.Add(50 * time.Second)); n != 51 {
		t.Fatalf("swept %d, want 51 (50 records + 1 tombstone)", n)
	}
	if s.Len() != 50 {
		t.Fatalf("len %d", s.Len())
	}
	count := 0
	s.Range(t0.Add(50*time.Second), func(Record) bool { count++; return true })
	if count != 50 {
		t.Fatalf("range saw %d", count)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, time.Millisecond); close(done) }()
	cancel()
	<-done
}

func TestConcurrent(t *testing.T) {
	s := New(1 << 22)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				id := uint64(g*100000 + i)
				s.Put(rec(id, time.Minute, 64), t0)
				s.Get(key(id), t0)
				if i%10 == 0 {
					s.Delete(key(id), 0, t0)
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.Sweep(t0) }()
	wg.Wait()
	if s.Len() != 4*1800 {
		t.Fatalf("len %d", s.Len())
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	s := New(1 << 20)
	s.Put(rec(1, time.Minute, 10), t0)
	k := key(1)
	if n := testing.AllocsPerRun(1000, func() { s.Get(k, t0) }); n != 0 {
		t.Fatalf("Get allocates %v", n)
	}
}

func BenchmarkGet(b *testing.B) {
	s := New(1 << 26)
	for i := uint64(0); i < 10000; i++ {
		s.Put(rec(i, time.Hour, 200), t0)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint64(0)
		for pb.Next() {
			s.Get(key(i%10000), t0)
			i++
		}
	})
}

func BenchmarkPut(b *testing.B) {
	s := New(1 << 30)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Put(rec(uint64(i), time.Hour, 0), t0)
	}
}

// BenchmarkStoreMemory measures the heap bytes a stored session costs
// beyond its state bytes (metric B/session). Target: ≤ 300 B, so one
// million sessions of ~700 B state fit in well under 1 GiB.
func BenchmarkStoreMemory(b *testing.B) {
	const n = 200_000
	const stateSize = 256
	for b.Loop() {
		keys := make([]Key, n)
		for i := range keys {
			rand.Read(keys[i][:])
		}
		states := make([][]byte, n)
		for i := range states {
			states[i] = make([]byte, stateSize)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New(1 << 34)
		for i := range keys {
			s.Put(Record{Key: keys[i], Expires: t0.Add(time.Hour).UnixNano(), State: states[i]}, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/session")
		runtime.KeepAlive(s)
		runtime.KeepAlive(states)
	}
}

// shardKeys returns n keys that fall into shard 0.
func shardKeys(n int) []Key {
	var keys []Key
	for i := 0; len(keys) < n; i++ {
		k := key(uint64(i))
		if binary.LittleEndian.Uint64(k[:8])%NumShards == 0 {
			keys = append(keys, k)
		}
	}
	return keys
}

// The package promises that tombstones outlive eviction: under memory
// pressure records are evicted, never the tombstone of a revoked session,
// so its late insert (or a snapshot carrying it) stays refused.
func TestTombstonesOutliveEviction(t *testing.T) {
	s := New(NumShards * 4 * (recordOverhead + 100)) // 4 records of 100 B per shard
	keys := shardKeys(12)
	// Revoked first, with the soonest expiry of all: the first an
	// expiry-ordered eviction would pick.
	s.Delete(keys[0], t0.Add(10*time.Second).UnixNano(), t0)
	for i, k := range keys[1:] {
		s.Put(Record{Key: k, Expires: t0.Add(time.Duration(100+i) * time.Second).UnixNano(), State: make([]byte, 100)}, t0)
	}
	if st := s.Stats(); st.Evicted == 0 || st.Tombstones != 1 {
		t.Fatalf("stats %+v: want evictions and the tombstone kept", st)
	}
	late := Record{Key: keys[0], Expires: t0.Add(time.Minute).UnixNano(), State: make([]byte, 100)}
	if s.Put(late, t0) {
		t.Fatal("a revoked session came back after eviction")
	}
	if _, st := s.Get(keys[0], t0); st != Revoked {
		t.Fatalf("revoked key reads %v", st)
	}
	// The tombstone still ends with its expiry.
	if n := s.Sweep(t0.Add(11 * time.Second)); n != 1 || s.Stats().Tombstones != 0 {
		t.Fatalf("swept %d, stats %+v", n, s.Stats())
	}
}

// Every shard ends with at least a cache line of padding and spans whole
// lines, so no line holds written fields of two shards.
func TestShardPadding(t *testing.T) {
	typ := reflect.TypeOf(shard{})
	pad := typ.Field(typ.NumField() - 1)
	if pad.Name != "_" || pad.Type.Kind() != reflect.Array || pad.Type.Len() < cacheLine {
		t.Fatalf("last field %s %v: want at least %d bytes of padding", pad.Name, pad.Type, cacheLine)
	}
	if typ.Size()%cacheLine != 0 {
		t.Fatalf("shard is %d bytes, not a multiple of %d", typ.Size(), cacheLine)
	}
}

// BenchmarkPutParallel has every P replace its own session over and over
// (each Put finds the previous one expired), in a shard of its own: a
// steady state with no map growth, so what it measures is the cost of a
// Put and what the Ps share. With per-shard counters and padded shards they
// share no written cache line; with store-wide counters every Put wrote the
// same lines. Compare -cpu 1,2 runs of this and of the previous code, side
// by side.
func BenchmarkPutParallel(b *testing.B) {
	s := New(1 << 30)
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		var k Key // a key of shard 7*g: distinct shards for the first 64 Ps
		binary.LittleEndian.PutUint64(k[:8], (7*g)%NumShards)
		binary.LittleEndian.PutUint64(k[8:], g)
		now := t0
		state := make([]byte, 64)
		for pb.Next() {
			s.Put(Record{Key: k, Expires: now.Add(time.Second).UnixNano(), State: state}, now)
			now = now.Add(time.Second)
		}
	})
}
