package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/clusterstate/ratelimit"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

func randStr(r *rand.Rand) string {
	b := make([]byte, r.IntN(40))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

func randRecord(r *rand.Rand) store.Record {
	var rec store.Record
	for i := range rec.Key {
		rec.Key[i] = byte(r.Uint32())
	}
	for i := range rec.Binding {
		rec.Binding[i] = byte(r.Uint32())
	}
	rec.Origin, rec.Created, rec.Expires = r.Uint64(), r.Int64(), r.Int64()
	rec.Kind = store.Kind(r.IntN(2))
	if n := r.IntN(300); n > 0 {
		rec.State = make([]byte, n)
		for i := range rec.State {
			rec.State[i] = byte(r.Uint32())
		}
	}
	return rec
}

func randRecords(r *rand.Rand) []store.Record {
	n := r.IntN(5)
	if n == 0 {
		return nil
	}
	rs := make([]store.Record, n)
	for i := range rs {
		rs[i] = randRecord(r)
	}
	return rs
}

// randMessages returns one random instance of every message type.
func randMessages(r *rand.Rand) []Message {
	var tomb []Tombstone
	for i := r.IntN(4); i > 0; i-- {
		t := Tombstone{Expires: r.Int64()}
		t.Key[0] = byte(i)
		tomb = append(tomb, t)
	}
	var keys []TicketKey
	for i := r.IntN(4); i > 0; i-- {
		k := TicketKey{Created: r.Int64(), Generator: randStr(r)}
		k.Secret[3] = byte(r.Uint32())
		keys = append(keys, k)
	}
	lr := &LookupResponse{ID: r.Uint64(), Found: r.IntN(2) == 1}
	if lr.Found {
		lr.Record = randRecord(r)
	}
	req := &LookupRequest{ID: r.Uint64()}
	req.Key[5] = byte(r.Uint32())
	return []Message{
		&Hello{MinVersion: uint16(r.Uint32()), MaxVersion: uint16(r.Uint32()),
			ClusterID: randStr(r), NodeName: randStr(r), MeshAddr: randStr(r)},
		&Insert{Records: randRecords(r)},
		&Delete{Tombstones: tomb},
		&Heartbeat{Sent: r.Int64(), Records: r.Uint64()},
		&SnapshotRequest{ID: r.Uint64()},
		&SnapshotChunk{ID: r.Uint64(), Records: randRecords(r)},
		&SnapshotEnd{ID: r.Uint64(), Count: r.Uint64()},
		req,
		lr,
		&TicketKeys{Ring: randStr(r), RetiredBefore: r.Int64(), Keys: keys},
		&LimitCounts{Counts: randCounts(r)},
		&Goodbye{Reason: randStr(r)},
		&KVUpdate{Entries: randKV(r)},
		&KVSnapshotChunk{ID: r.Uint64(), Entries: randKV(r)},
	}
}

func randKV(r *rand.Rand) []clusterstate.Entry {
	n := r.IntN(4)
	if n == 0 {
		return nil
	}
	es := make([]clusterstate.Entry, n)
	for i := range es {
		e := &es[i]
		e.Zone, e.Key = "z"+randStr(r), "k"+randStr(r)
		e.Version, e.Origin, e.Expires = r.Int64(), r.Uint64(), r.Int64()
		if e.Deleted = r.IntN(3) == 0; !e.Deleted {
			if v := r.IntN(50); v > 0 {
				e.Value = []byte(randStr(r) + "v")
			}
		}
	}
	return es
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 200; iter++ {
		var stream []byte
		msgs := randMessages(r)
		for _, m := range msgs {
			stream = AppendFrame(stream, m)
		}
		fr := NewReader(bytes.NewReader(stream), 0)
		for _, want := range msgs {
			got, err := fr.ReadMessage()
			if err != nil {
				t.Fatalf("%v: %v", want.Type(), err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%v: got %+v want %+v", want.Type(), got, want)
			}
		}
		if _, err := fr.ReadMessage(); err != io.EOF {
			t.Fatalf("trailing: %v", err)
		}
	}
}

func frame(t Type, payload []byte) []byte {
	b := []byte{byte(t), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func TestRejectMalformed(t *testing.T) {
	hello := AppendFrame(nil, &Hello{ClusterID: "c", NodeName: "n"})
	ins := AppendFrame(nil, &Insert{Records: []store.Record{{State: []byte{1, 2, 3}}}})
	bigState := appendU32(nil, 1)
	bigState = append(bigState, make([]byte, recordFixed-4)...)
	bigState = appendU32(bigState, MaxStateSize+1)
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"oversized frame", []byte{byte(TypeInsert), 0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"one byte", frame(TypeInsert, nil)[:1:1], io.ErrUnexpectedEOF},
		{"unknown type", frame(200, nil), ErrUnknownType},
		{"type zero", frame(0, nil), ErrUnknownType},
		{"truncated header", hello[:3], io.ErrUnexpectedEOF},
		{"truncated payload", hello[:len(hello)-1], io.ErrUnexpectedEOF},
		{"short hello", frame(TypeHello, []byte{0, 1}), ErrMalformed},
		{"trailing bytes", frame(TypeHeartbeat, make([]byte, 17)), ErrMalformed},
		{"huge record count", frame(TypeInsert, []byte{0xff, 0xff, 0xff, 0xff}), ErrMalformed},
		{"count beyond payload", frame(TypeInsert, append(appendU32(nil, 2), ins[9:]...)), ErrMalformed},
		{"state too large", frame(TypeInsert, bigState), ErrMalformed},
		{"bad found flag", frame(TypeLookupResponse, append(make([]byte, 8), 7)), ErrMalformed},
		{"too many keys", frame(TypeTicketKeys, []byte{MaxTicketKeys + 1}), ErrMalformed},
		{"delete count", frame(TypeDelete, appendU32(nil, 3)), ErrMalformed},
		{"type 15 unknown", frame(15, nil), ErrUnknownType},
		{"limit counts without a count", frame(TypeLimitCounts, nil), ErrMalformed},
		{"kv count beyond payload", frame(TypeKVUpdate, appendU32(nil, 1)), ErrMalformed},
		{"kv empty zone", frame(TypeKVUpdate, kvRaw(0, "k", 0, 0)), ErrMalformed},
		{"kv zone too long", frame(TypeKVUpdate, kvRaw(clusterstate.MaxZoneLen+1, "k", 0, 0)), ErrMalformed},
		{"kv empty key", frame(TypeKVUpdate, kvRaw(1, "", 0, 0)), ErrMalformed},
		{"kv reserved flag", frame(TypeKVUpdate, kvRaw(1, "k", 2, 0)), ErrMalformed},
		{"kv deletion with value", frame(TypeKVUpdate, kvRaw(1, "k", 1, 3)), ErrMalformed},
		{"kv value too large", frame(TypeKVUpdate, kvRaw(1, "k", 0, clusterstate.MaxValueLen+1)), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fr := NewReader(bytes.NewReader(tc.input), 0)
			_, err := fr.ReadMessage()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// kvRaw encodes one KVUpdate entry by hand, with a zone of zl bytes, the
// given key and flags, and a value length field of vl followed by vl bytes
// (capped at 8 so that oversized lengths are refused on the length alone).
func kvRaw(zl int, key string, flags byte, vl uint32) []byte {
	b := appendU32(nil, 1)
	b = append(b, byte(zl))
	b = append(b, bytes.Repeat([]byte{'z'}, zl)...)
	b = appendU16(b, uint16(len(key)))
	b = append(b, key...)
	b = append(b, flags)
	b = append(b, make([]byte, 24)...)
	b = appendU32(b, vl)
	return append(b, make([]byte, min(vl, 8))...)
}

// A message type is only part of the versions from the one that
// introduced it: an older version refuses it as unknown, and the encoder
// refuses to write it (the sender checks Supports).
func TestTypeVersions(t *testing.T) {
	for ty := Type(1); ty <= TypeLimitCounts; ty++ {
		if Since(ty) == 0 {
			t.Fatalf("%v has no version", ty)
		}
	}
	if Since(TypeLimitCounts+1) != 0 || Since(0) != 0 {
		t.Fatal("an unknown type has a version")
	}
	kv := AppendFrame(nil, &KVUpdate{Entries: []clusterstate.Entry{{Zone: "z", Key: "k", Value: []byte("v")}}})
	for v := MinVersion; v < 3; v++ {
		if _, err := DecodeVersion(v, TypeKVUpdate, kv[HeaderSize:]); !errors.Is(err, ErrUnknownType) {
			t.Fatalf("version %d decoded a kv_update: %v", v, err)
		}
	}
	if _, err := DecodeVersion(3, TypeKVUpdate, kv[HeaderSize:]); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("AppendFrameVersion wrote a kv_update at version 2")
		}
	}()
	AppendFrameVersion(nil, 2, &KVUpdate{})
}

// Version 1 records have no kind byte: a version 1 frame leaves out the
// records of other kinds than ticket state (its receiver would take them
// for ticket state), and round-trips the rest.
func TestVersion1Records(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	tls, sid := randRecord(r), randRecord(r)
	tls.Kind, sid.Kind = store.KindTLSState, store.KindTLS12SessionID
	for _, m := range []Message{
		&Insert{Records: []store.Record{sid, tls, sid}},
		&SnapshotChunk{ID: 9, Records: []store.Record{tls, sid}},
	} {
		f := AppendFrameVersion(nil, 1, m)
		got, err := DecodeVersion(1, m.Type(), f[HeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		var recs []store.Record
		switch g := got.(type) {
		case *Insert:
			recs = g.Records
		case *SnapshotChunk:
			recs = g.Records
		}
		if len(recs) != 1 || !reflect.DeepEqual(recs[0], tls) {
			t.Fatalf("%v at version 1: got %+v", m.Type(), recs)
		}
		// Decoded as version 2, the same bytes are malformed or differ:
		// the versions are really distinct encodings.
		if g2, err := DecodeVersion(2, m.Type(), f[HeaderSize:]); err == nil && reflect.DeepEqual(g2, got) {
			t.Fatalf("%v: version 1 and 2 encodings agree", m.Type())
		}
	}
	lr := AppendFrameVersion(nil, 1, &LookupResponse{ID: 1, Found: true, Record: sid})
	got, err := DecodeVersion(1, TypeLookupResponse, lr[HeaderSize:])
	if err != nil || got.(*LookupResponse).Found {
		t.Fatalf("session-ID record answered to a version 1 lookup: %+v %v", got, err)
	}
}

func TestReaderLimitBeforeAlloc(t *testing.T) {
	fr := NewReader(bytes.NewReader(frame(TypeHeartbeat, make([]byte, 100))), 64)
	if _, _, err := fr.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err %v", err)
	}
	if cap(fr.buf) != 0 {
		t.Fatalf("allocated %d bytes for a refused frame", cap(fr.buf))
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		a0, a1, b0, b1, want uint16
		ok                   bool
	}{
		{1, 1, 1, 1, 1, true},
		{1, 3, 2, 5, 3, true},
		{1, 1, 2, 2, 0, false},
		{3, 4, 1, 2, 0, false},
	}
	for _, tc := range tests {
		v, ok := Negotiate(tc.a0, tc.a1, tc.b0, tc.b1)
		if v != tc.want || ok != tc.ok {
			t.Errorf("Negotiate(%v) = %d, %v", tc, v, ok)
		}
	}
}

func TestTypeString(t *testing.T) {
	if TypeLookupResponse.String() != "lookup_response" || Type(99).String() != "unknown(99)" ||
		TypeKVSnapshotChunk.String() != "kv_snapshot_chunk" {
		t.Fatal("bad names")
	}
}

// FuzzDecode feeds arbitrary byte streams to the frame reader and decoder;
// whatever decodes must re-encode to something that decodes equal.
func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, m := range randMessages(r) {
		f.Add(AppendFrame(nil, m))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := NewReader(bytes.NewReader(data), 1<<16)
		for range 16 {
			m, err := fr.ReadMessage()
			if err != nil {
				return
			}
			again, err := NewReader(bytes.NewReader(AppendFrame(nil, m)), 0).ReadMessage()
			if err != nil {
				t.Fatalf("re-decode %v: %v", m.Type(), err)
			}
			if !reflect.DeepEqual(m, again) {
				t.Fatalf("%v changed across round trip", m.Type())
			}
		}
	})
}

// FuzzDecodeVersion decodes arbitrary payloads of every type at every
// version; whatever decodes must re-encode at that version to something
// that decodes equal, and a type the version does not carry never decodes.
func FuzzDecodeVersion(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	for v := MinVersion; v <= MaxVersion; v++ {
		for _, m := range randMessages(r) {
			if Supports(v, m.Type()) {
				f.Add(v, byte(m.Type()), AppendFrameVersion(nil, v, m)[HeaderSize:])
			}
		}
	}
	f.Fuzz(func(t *testing.T, v uint16, ty byte, payload []byte) {
		m, err := DecodeVersion(v, Type(ty), payload)
		if err != nil {
			return
		}
		if !Supports(v, Type(ty)) {
			t.Fatalf("%v decoded at version %d", Type(ty), v)
		}
		again, err := DecodeVersion(v, m.Type(), AppendFrameVersion(nil, v, m)[HeaderSize:])
		if err != nil {
			t.Fatalf("re-decode %v at %d: %v", m.Type(), v, err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("%v changed across round trip at version %d", m.Type(), v)
		}
	})
}

// TestWriteSeedCorpus regenerates testdata/fuzz/FuzzDecode and
// FuzzDecodeVersion when MESHGATE_WRITE_CORPUS=1; otherwise it checks the
// corpora are present.
func TestWriteSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	vdir := filepath.Join("testdata", "fuzz", "FuzzDecodeVersion")
	if os.Getenv("MESHGATE_WRITE_CORPUS") != "1" {
		for _, d := range []string{dir, vdir} {
			ents, err := os.ReadDir(d)
			if err != nil || len(ents) == 0 {
				t.Fatalf("seed corpus missing in %s: run with MESHGATE_WRITE_CORPUS=1", d)
			}
		}
		return
	}
	writeVersionCorpus(t, vdir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	seeds := [][]byte{
		{byte(TypeInsert), 0xff, 0xff, 0xff, 0xff},
		frame(TypeInsert, []byte{0, 0, 0, 9}),
		frame(TypeTicketKeys, []byte{17}),
	}
	for _, m := range randMessages(r) {
		seeds = append(seeds, AppendFrame(nil, m))
	}
	var all []byte
	for _, s := range seeds[3:] {
		all = append(all, s...)
	}
	seeds = append(seeds, all)
	for i, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func writeVersionCorpus(t *testing.T, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	i := 0
	write := func(v uint16, ty Type, p []byte) {
		body := fmt.Sprintf("go test fuzz v1\nuint16(%d)\nbyte(%d)\n[]byte(%q)\n", v, byte(ty), p)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for v := MinVersion; v <= MaxVersion; v++ {
		for _, m := range randMessages(r) {
			if Supports(v, m.Type()) {
				write(v, m.Type(), AppendFrameVersion(nil, v, m)[HeaderSize:])
			}
		}
	}
	// A kv_update offered to version 2, and hand-made malformed entries.
	write(2, TypeKVUpdate, AppendFrame(nil, &KVUpdate{Entries: randKV(r)})[HeaderSize:])
	write(3, TypeKVUpdate, kvRaw(1, "k", 1, 3))
	write(3, TypeKVUpdate, kvRaw(0, "k", 0, 0))
	// Limit counts offered to version 4, a count larger than the payload,
	// and a payload one byte longer than its count says.
	lc := AppendFrame(nil, &LimitCounts{Counts: randCounts(r)})[HeaderSize:]
	write(4, TypeLimitCounts, lc)
	write(5, TypeLimitCounts, []byte{0, 0, 0, 200, 1, 2, 3})
	write(5, TypeLimitCounts, append(AppendFrame(nil, &LimitCounts{Counts: make([]ratelimit.Count, 1)})[HeaderSize:], 0))
}

// A ticket key message's ring and retirement time are on the wire from
// version 4 on: at older versions the receiver reads the default ring,
// the same bytes at version 4 are another message.
func TestTicketKeyRingsVersion(t *testing.T) {
	m := &TicketKeys{Ring: "tenant/policy", RetiredBefore: 42,
		Keys: []TicketKey{{Created: 7, Generator: "node-0", Secret: [32]byte{1}}}}
	for v := MinVersion; v <= MaxVersion; v++ {
		f := AppendFrameVersion(nil, v, m)
		got, err := DecodeVersion(v, TypeTicketKeys, f[HeaderSize:])
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		want := *m
		if v < RingsSince {
			want.Ring, want.RetiredBefore = "", 0
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("version %d: got %+v, want %+v", v, got, &want)
		}
	}
	old := AppendFrameVersion(nil, RingsSince-1, m)
	if _, err := DecodeVersion(RingsSince, TypeTicketKeys, old[HeaderSize:]); err == nil {
		t.Error("a version 3 ticket key frame decodes at version 4")
	}
}

func randCounts(r *rand.Rand) []ratelimit.Count {
	n := r.IntN(5)
	if n == 0 {
		return nil
	}
	cs := make([]ratelimit.Count, n)
	for i := range cs {
		cs[i] = ratelimit.Count{Limit: r.Uint32(), Key: r.Uint64(), Window: r.Int64(), Count: r.Uint32()}
	}
	return cs
}

// Limit counts are part of version 5 only, and their payload length must
// be exactly what the count says.
func TestLimitCountsVersionAndLength(t *testing.T) {
	m := &LimitCounts{Counts: []ratelimit.Count{{Limit: 1, Key: 2, Window: 3000, Count: 4}}}
	p := AppendFrame(nil, m)[HeaderSize:]
	if len(p) != 4+LimitCountSize {
		t.Fatalf("payload of one count is %d bytes, want %d", len(p), 4+LimitCountSize)
	}
	if _, err := DecodeVersion(LimitsSince-1, TypeLimitCounts, p); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("decoded at version %d: %v", LimitsSince-1, err)
	}
	got, err := DecodeVersion(LimitsSince, TypeLimitCounts, p)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range [][]byte{p[:len(p)-1], append(p[:len(p):len(p)], 0), {0, 0, 0, 2}, {0xff, 0xff, 0xff, 0xff}} {
		if _, err := DecodeVersion(LimitsSince, TypeLimitCounts, bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d-byte payload: %v, want malformed", len(bad), err)
		}
	}
}
