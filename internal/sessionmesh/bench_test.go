package sessionmesh

import (
	"crypto/tls"
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports process CPU per operation (client and server sides of
// the handshake together, plus mesh work) as "cpu-µs/op".
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkHandshake compares, per TLS version, a full handshake, a
// resumption on the issuing node (local) and a resumption on another node
// (cross: the session arrived by replication). RSA-2048 server certificate,
// X25519, real loopback TCP. Target: cross ≤ 1.05 × local.
func BenchmarkHandshake(b *testing.B) {
	nodes, _ := cluster(b, 2, Stateful)
	for _, v := range versions {
		b.Run(v.name+"/full", func(b *testing.B) {
			start := cpuTime()
			for b.Loop() {
				c := &client{cache: nil, max: v.v, sni: "a.example.com"}
				if c.mustConnect(b, nodes[0].tlsAddr) {
					b.Fatal("resumed")
				}
			}
			reportCPU(b, start)
		})
		for _, tc := range []struct {
			name   string
			target int
		}{{"resumed-local", 0}, {"resumed-cross", 1}} {
			b.Run(v.name+"/"+tc.name, func(b *testing.B) {
				c := &client{cache: &fixedCache{}, max: v.v, sni: "a.example.com"}
				c.mustConnect(b, nodes[0].tlsAddr)
				waitFor(b, "replication", recordsEverywhere(nodes, 1))
				start := cpuTime()
				for b.Loop() {
					if !c.mustConnect(b, nodes[tc.target].tlsAddr) {
						b.Fatal("not resumed")
					}
				}
				reportCPU(b, start)
			})
		}
	}
}

// BenchmarkZeroThinkTime issues a session on one node and immediately
// resumes it on the next, b.N times, and reports the share resumed
// (target ≥ 99.9 %). The point lookup to the issuer covers replication lag.
func BenchmarkZeroThinkTime(b *testing.B) {
	nodes, _ := cluster(b, 3, Stateful)
	resumed, i := 0, 0
	for b.Loop() {
		c := newClient(versions[i%2].v)
		c.mustConnect(b, nodes[i%3].tlsAddr)
		if c.mustConnect(b, nodes[(i+1)%3].tlsAddr) {
			resumed++
		}
		i++
	}
	var lookups uint64
	for _, tn := range nodes {
		lookups += tn.Status().Remote[0]
	}
	b.ReportMetric(100*float64(resumed)/float64(i), "%resumed")
	b.ReportMetric(float64(lookups)/float64(i), "lookups/op")
}

// BenchmarkUnwrapLocal measures the stateful resume hooks alone (MAC check,
// store lookup, binding, ParseSessionState) against a session captured
// from a real handshake.
func BenchmarkUnwrapLocal(b *testing.B) {
	ca, _ := newCA(b)
	n := newTestNode(b, ca, "solo", Stateful, func(c *Config) { c.ListenAddr = "" })
	cert, _ := serverCert()
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	n.ConfigureTLS(cfg, Host{Leaf: cert.Certificate[0]})
	cl := &client{cache: &fixedCache{}, max: tls.VersionTLS13, sni: "a.example.com"}
	cl.mustConnect(b, n.tlsAddr)
	id := identity(b, cl.cache, "")
	cs := tls.ConnectionState{ServerName: "a.example.com", Version: tls.VersionTLS13}
	// The id was issued by the test server's config (policy default/p gen 1).
	srv := &statefulHost{n: n.Node, lifetime: time.Minute}
	srv.hb = newHostBinding(testHost(cert, Stateful))
	if ss, _ := srv.unwrap(id, cs); ss == nil {
		b.Fatal("unwrap missed")
	}
	b.ReportAllocs()
	for b.Loop() {
		srv.unwrap(id, cs)
	}
}

// BenchmarkReceiveRecord is what a node spends on one replicated record of
// 700 bytes of state: checkRecord (the cluster MAC of the state, issue 15
// finding 5) and then store.Put, side by side with Put alone.
func BenchmarkReceiveRecord(b *testing.B) {
	n, err := New(Config{NodeName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	state := make([]byte, 700)
	mk := func(i int) store.Record {
		binary.BigEndian.PutUint64(state, uint64(i))
		s := append([]byte(nil), state...)
		now := time.Now()
		return store.Record{Key: n.sessionKey(s), Origin: mesh.NodeID("peer"), Created: now.UnixNano(),
			Expires: now.Add(time.Minute).UnixNano(), State: s}
	}
	for _, check := range []bool{false, true} {
		name := "put"
		if check {
			name = "check+put"
		}
		b.Run(name, func(b *testing.B) {
			recs := make([]store.Record, b.N)
			for i := range recs {
				recs[i] = mk(i)
			}
			n.store = store.New(0)
			b.ResetTimer()
			now := time.Now()
			for i := range recs {
				if check && !n.checkRecord("peer", &recs[i], true, now) {
					b.Fatal("refused")
				}
				n.store.Put(recs[i], now)
			}
		})
	}
}
