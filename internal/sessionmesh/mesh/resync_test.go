package mesh

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// linkProxy is one directed link between two test nodes: a TCP forwarder
// that can black-hole its traffic like a partition (bytes are read and
// discarded, nothing is delivered, nothing is reset) and heal again.
type linkProxy struct {
	ln     net.Listener
	target string
	cut    atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lp := &linkProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	lp.wg.Go(lp.accept)
	t.Cleanup(lp.close)
	return lp
}

func (lp *linkProxy) addr() string { return lp.ln.Addr().String() }

func (lp *linkProxy) track(c net.Conn) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.conns == nil {
		return false
	}
	lp.conns[c] = struct{}{}
	return true
}

func (lp *linkProxy) accept() {
	for {
		in, err := lp.ln.Accept()
		if err != nil {
			return
		}
		if !lp.track(in) {
			in.Close()
			return
		}
		lp.wg.Go(func() { lp.serve(in) })
	}
}

// serve forwards in <-> target while the link is up. A connection made
// while cut, or alive when the cut starts, only swallows bytes.
func (lp *linkProxy) serve(in net.Conn) {
	defer in.Close()
	if lp.cut.Load() {
		io.Copy(io.Discard, in)
		return
	}
	out, err := net.Dial("tcp", lp.target)
	if err != nil {
		return
	}
	if !lp.track(out) {
		out.Close()
		return
	}
	defer out.Close()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				dst.Close()
				src.Close()
				return
			}
			if lp.cut.Load() {
				continue // black hole: the sender sees success, nothing arrives
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				src.Close()
				return
			}
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { pipe(out, in) })
	pipe(in, out)
	wg.Wait()
}

func (lp *linkProxy) close() {
	lp.ln.Close()
	lp.mu.Lock()
	for c := range lp.conns {
		c.Close()
	}
	lp.conns = nil
	lp.mu.Unlock()
	lp.wg.Wait()
}

// proxiedCluster starts n nodes whose every directed link goes through a
// linkProxy: links[i][j] is what node i dials to reach node j.
func proxiedCluster(t *testing.T, ca *pki.CA, n int, mut func(*Config)) ([]*testMesh, [][]*linkProxy) {
	t.Helper()
	srcs := make([]chanPeers, n)
	nodes := make([]*testMesh, n)
	for i := range n {
		srcs[i] = make(chanPeers, 1)
		nodes[i] = startMesh(t, ca, string(rune('a'+i)), srcs[i], mut)
	}
	links := make([][]*linkProxy, n)
	for i := range n {
		links[i] = make([]*linkProxy, n)
		var set []string
		for j := range n {
			if i != j {
				links[i][j] = newLinkProxy(t, nodes[j].Addr())
				set = append(set, links[i][j].addr())
			}
		}
		srcs[i] <- set
	}
	waitFor(t, "cluster online", func() bool {
		for _, m := range nodes {
			if len(m.OnlineNames()) != n-1 || !m.Synced() {
				return false
			}
		}
		return true
	})
	return nodes, links
}

// isolate cuts (or heals) every link to and from node k.
func isolate(links [][]*linkProxy, k int, cut bool) {
	for i := range links {
		if i != k {
			links[i][k].cut.Store(cut)
			links[k][i].cut.Store(cut)
		}
	}
}

func recordFrom(origin, i uint64) store.Record {
	r := record(origin<<32 | i)
	r.Origin = origin
	return r
}

// TestResyncAfterPartition isolates one node of three and inserts on both
// sides of the partition: first while the dead connections are not yet
// detected (the batches vanish in the black hole, as with a real
// partition, and can only come back through a re-sync), then after they
// are (queued, flushed on reconnect). It heals and checks that every node
// ends up holding every record. A
// session revoked during the partition is revoked on every node after the
// heal, the isolated one included (issue 15, finding 10).
func TestResyncAfterPartition(t *testing.T) {
	ca, _ := pki.NewCA("t")
	nodes, links := proxiedCluster(t, ca, 3, nil)
	a, c := nodes[0], nodes[2]

	const before, during = 50, 2000
	put := func(m *testMesh, r store.Record) {
		m.h.s.Put(r, time.Now())
		m.Insert(r)
	}
	for i := range uint64(before) {
		put(a, recordFrom(1, i))
	}
	waitFor(t, "pre-partition replication", func() bool { return c.h.s.Len() == before })

	isolate(links, 2, true)
	revoked := recordFrom(1, 0)
	a.h.s.Delete(revoked.Key, revoked.Expires, time.Now())
	a.Delete(wire.Tombstone{Key: revoked.Key, Expires: revoked.Expires})
	insert := func(from, to uint64) {
		for i := from; i < to; i++ {
			put(nodes[i%2], recordFrom(2+i%2, i)) // a and b on the majority side
			put(c, recordFrom(4, i))
		}
	}
	insert(0, during/2) // into the black hole
	waitFor(t, "partition detected", func() bool {
		return len(c.OnlineNames()) == 0 && len(a.OnlineNames()) == 1
	})
	insert(during/2, during) // queued until the heal

	healed := time.Now()
	isolate(links, 2, false)
	want := before + 2*during
	waitFor(t, "convergence after heal", func() bool {
		for _, m := range nodes {
			// The revocation reached c too (queued tombstones are never
			// dropped, and snapshots carry them).
			if m.h.s.Len() != want-1 || m.Status().Resyncs == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("converged %d records on 3 nodes %v after heal", want, time.Since(healed))
	for _, m := range nodes {
		if _, st := m.h.s.Get(revoked.Key, time.Now()); st != store.Revoked {
			t.Errorf("revoked session on %s: %v, want revoked", m.cfg.NodeName, st)
		}
	}
}

// TestResyncAfterConnectionReset drops one direction only: the inbound
// connection from b to a is reset while a's outbound to b stays up. The
// records b sent into the dead connection must still reach a.
func TestResyncAfterConnectionReset(t *testing.T) {
	ca, _ := pki.NewCA("t")
	nodes, links := proxiedCluster(t, ca, 2, func(c *Config) { c.Log = testr.NewWithOptions(t, testr.Options{Verbosity: 1}) })
	a, b := nodes[0], nodes[1]
	link := links[1][0] // b -> a
	link.cut.Store(true)
	for i := range uint64(1000) {
		r := recordFrom(2, i)
		b.h.s.Put(r, time.Now())
		b.Insert(r)
	}
	waitFor(t, "b's connection to a declared dead", func() bool { return len(b.OnlineNames()) == 0 })
	link.cut.Store(false)
	waitFor(t, "a has every record of b", func() bool {

		return a.h.s.Len() == 1000 && a.Status().Resyncs > 0
	})
}
