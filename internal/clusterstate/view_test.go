package clusterstate

import (
	"errors"
	"testing"
	"time"
	"unsafe"
)

// A ZoneView reads and writes its zone like the Store does (writes are
// published, entries expire), refuses an unknown zone, and its Get does
// not allocate nor retain its key: a key aliasing a buffer that is
// overwritten afterwards still finds only what it named.
func TestZoneView(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	s, pub := newStore(t, 3, c, ZoneConfig{Name: "a"}, ZoneConfig{Name: "b"})
	if _, err := s.View("nope"); !errors.Is(err, ErrNoZone) {
		t.Fatalf("View of an unknown zone: %v", err)
	}
	v, err := s.View("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Put("k", []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if len(*pub) != 1 || (*pub)[0].Zone != "b" || (*pub)[0].Key != "k" {
		t.Fatalf("published %+v", *pub)
	}
	if e, ok, _ := s.Get("b", "k"); !ok || string(e.Value) != "v1" {
		t.Fatalf("store Get %+v %v", e, ok)
	}
	if _, ok, _ := s.Get("a", "k"); ok {
		t.Fatal("the write reached another zone")
	}
	buf := []byte("k")
	key := unsafe.String(&buf[0], len(buf))
	if e, ok := v.Get(key); !ok || string(e.Value) != "v1" {
		t.Fatalf("view Get %+v %v", e, ok)
	}
	buf[0] = 'x'
	if _, ok := v.Get(key); ok {
		t.Fatal("found a key that was never written")
	}
	buf[0] = 'k'
	if n := testing.AllocsPerRun(100, func() { v.Get(key) }); n != 0 {
		t.Fatalf("Get allocates %v times", n)
	}
	if err := v.Put("", []byte("x"), time.Minute); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty key: %v", err)
	}
	c.add(time.Minute)
	if _, ok := v.Get("k"); ok {
		t.Fatal("an expired entry is returned")
	}
}
