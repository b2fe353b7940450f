package breakdown

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		stack []string // leaf first
		want  string
	}{
		{[]string{"crypto/internal/fips140/mlkem.(*DecapsulationKey768).Decapsulate", "crypto/internal/fips140/sha3.(*Digest).Write", "crypto/tls.(*serverHandshakeStateTLS13).processClientHello"}, "crypto: ML-KEM-768"},
		{[]string{"crypto/internal/fips140/sha3.keccakF1600", "crypto/internal/fips140/mlkem.kemEncaps"}, "crypto: ML-KEM-768"},
		{[]string{"crypto/internal/fips140/nistec.p256OrdMul", "crypto/internal/fips140/ecdsa.sign", "crypto/ecdsa.SignASN1"}, "crypto: ECDSA"},
		{[]string{"crypto/internal/fips140/nistec.(*P256Point).ScalarMult", "crypto/internal/fips140/ecdh.ECDH"}, "crypto: P-256 / P-384 ECDH"},
		{[]string{"crypto/internal/fips140/edwards25519/field.feMul", "crypto/ecdh.x25519ScalarMult"}, "crypto: X25519"},
		{[]string{"crypto/internal/fips140/bigmod.addMulVVW2048", "crypto/internal/fips140/rsa.decrypt"}, "crypto: RSA"},
		{[]string{"crypto/internal/fips140/aes/gcm.gcmAesEnc", "crypto/tls.(*halfConn).encrypt"}, "crypto: AES-GCM / ChaCha20-Poly1305"},
		{[]string{"crypto/internal/fips140/sha256.blockAMD64", mg + "sessionmesh.(*Node).mac"}, "crypto: SHA-2 / HMAC / HKDF"},
		// Allocation wins over the crypto that allocates; GC wins over all.
		{[]string{"runtime.mallocgc", "crypto/internal/fips140/mlkem.NewDecapsulationKey768"}, "allocation (mallocgc)"},
		{[]string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, "GC (mark, sweep, assists, write barriers)"},
		{[]string{"runtime.scanobject", "runtime.gcAssistAlloc", "runtime.mallocgc", "crypto/tls.(*Conn).readRecord"}, "GC (mark, sweep, assists, write barriers)"},
		// Syscalls wherever they come from, except the mesh's goroutines.
		{[]string{"internal/runtime/syscall.Syscall6", "syscall.Syscall", "syscall.write", "internal/poll.(*FD).Write", "crypto/tls.(*Conn).Write"}, "syscalls: write"},
		{[]string{"internal/runtime/syscall.Syscall6", "syscall.Syscall", "syscall.write", "crypto/tls.(*Conn).Write", mg + "sessionmesh/mesh.(*conn).writeLoop"}, "mesh: replicate out (issuer's writer)"},
		{[]string{"internal/runtime/syscall.Syscall6", "internal/runtime/syscall.EpollCtl", "runtime.netpollopen", "internal/poll.(*FD).Init"}, "syscalls: accept, setsockopt, epoll_ctl, close"},
		{[]string{"internal/runtime/syscall.Syscall6", "internal/runtime/syscall.EpollWait", "runtime.netpoll", "runtime.findRunnable"}, "scheduler, futex, netpoll, goroutines"},
		{[]string{"runtime.futex", "runtime.futexwakeup", "runtime.notewakeup", "runtime.startm", "runtime.wakep", "runtime.ready", "runtime.goready", "internal/poll.(*pollDesc).wait"}, "scheduler, futex, netpoll, goroutines"},
		{[]string{mg + "sessionmesh/store.(*Store).Put", mg + "sessionmesh.(*handler).HandleInsert", mg + "sessionmesh/mesh.(*conn).readLoop"}, "mesh: replicate in (peers' reader)"},
		{[]string{mg + "sessionmesh/store.(*Store).Put", mg + "sessionmesh.(*statefulHost).wrap", "crypto/tls.(*Conn).sendSessionTicket"}, "session store: wrap, unwrap, records"},
		{[]string{"github.com/pires/go-proxyproto.(*Conn).readHeader"}, "PROXY protocol header"},
		{[]string{"runtime.memmove", "crypto/tls.(*Conn).readHandshake"}, "TLS state machine (crypto/tls, tls12)"},
		{[]string{"net/textproto.(*Reader).ReadMIMEHeader", "net/http.readRequest", "net/http.(*conn).readRequest"}, "HTTP request parsing"},
		{[]string{"net/http.(*persistConn).readLoop"}, "proxy and upstream round trip"},
		{[]string{"net/http.(*response).finishRequest", "net/http.(*conn).serve"}, "HTTP serving (net/http, x/net/http2)"},
		{[]string{"runtime.memmove"}, "runtime (other: memmove, maps, timers, signals)"},
		{[]string{"main.main"}, Other},
	} {
		if got := Classify(tc.stack); got != tc.want {
			t.Errorf("Classify(%v) = %q, want %q", tc.stack, got, tc.want)
		}
	}
}

// synth builds a CPU profile with one sample per stack of the given ns.
func synth(t *testing.T, samples map[string]int64) *bytes.Buffer {
	t.Helper()
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 10_000_000,
	}
	var id uint64
	for stack, ns := range samples {
		var locs []*profile.Location
		for _, name := range strings.Split(stack, ";") {
			id++
			fn := &profile.Function{ID: id, Name: name}
			loc := &profile.Location{ID: id, Line: []profile.Line{{Function: fn}}}
			p.Function = append(p.Function, fn)
			p.Location = append(p.Location, loc)
			locs = append(locs, loc)
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: []int64{ns / 10_000_000, ns}})
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestBreakdownAndMarkdown(t *testing.T) {
	var before, after Breakdown
	if err := before.AddReader(synth(t, map[string]int64{
		"crypto/internal/fips140/mlkem.kemDecaps;crypto/tls.(*Conn).Handshake": 300_000_000,
		"syscall.write;crypto/tls.(*Conn).Write":                               100_000_000,
	})); err != nil {
		t.Fatal(err)
	}
	if err := after.AddReader(synth(t, map[string]int64{
		"syscall.write;crypto/tls.(*Conn).Write": 50_000_000,
	})); err != nil {
		t.Fatal(err)
	}
	if got := before.Nanos("crypto: ML-KEM-768"); got != 300_000_000 {
		t.Errorf("ML-KEM = %d", got)
	}
	if before.Total() != 400_000_000 || after.Total() != 50_000_000 {
		t.Errorf("totals %d %d", before.Total(), after.Total())
	}
	md := Markdown([]Column{{Name: "before", B: &before, Conns: 1000}, {Name: "after", B: &after, Conns: 1000}})
	for _, want := range []string{
		"| crypto: ML-KEM-768 | 300.0 (75 %) | 0.0 (0 %) | -300.0 |",
		"| syscalls: write | 100.0 (25 %) | 50.0 (100 %) | -50.0 |",
		"| **total (profiled)** | **400.0** (100 %) | **50.0** (100 %) | **-350.0** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "crypto: RSA") {
		t.Errorf("empty bucket rendered:\n%s", md)
	}
}

func TestAddRejectsNonCPUProfiles(t *testing.T) {
	p := &profile.Profile{SampleType: []*profile.ValueType{{Type: "alloc_space", Unit: "bytes"}}}
	var b Breakdown
	if err := b.Add(p); err == nil {
		t.Fatal("heap profile accepted")
	}
	if err := b.AddReader(strings.NewReader("not a profile")); err == nil {
		t.Fatal("garbage accepted")
	}
}
