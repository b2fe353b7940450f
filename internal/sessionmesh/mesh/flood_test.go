package mesh

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
)

// halfOpenFlood keeps up to perSource TCP connections per source address
// open to addr without ever starting TLS (half-open handshakes), reopening
// each one the node closes, until ctx ends. closed counts the connections
// the node closed.
func halfOpenFlood(ctx context.Context, addr string, sources []string, perSource int, closed *atomic.Int64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, src := range sources {
		for range perSource {
			wg.Go(func() {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
				for ctx.Err() == nil {
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						time.Sleep(5 * time.Millisecond) // bound the retry rate
						continue
					}
					stop := context.AfterFunc(ctx, func() { c.Close() })
					var b [1]byte
					c.Read(b[:]) // until the node closes it (or ctx ends)
					stop()
					c.Close()
					if ctx.Err() == nil {
						closed.Add(1)
					}
					// Reopen soon, not at once: the point is holding
					// slots, and on a loaded 2-core test machine an
					// unpaced accept/close loop starves every goroutine.
					time.Sleep(20 * time.Millisecond)
				}
			})
		}
	}
	return &wg
}

// TestHalfOpenFloodDoesNotLockOutPeers is finding 9 of issue 15. Before
// the fix every accepted connection took one of the 256 inbound slots
// before TLS started and held it up to DialTimeout (2 s): a few hundred
// half-open connections from anyone who can reach the port, reopened as
// the node closed them, kept every slot taken, and a real peer could not
// connect. Now a handshake takes a stranger slot (at most
// MaxHandshakesPerSource per source address, MaxHandshakes in all) for at
// most HandshakeTimeout; sources in the peer set have their own slots, and
// only authenticated connections take inbound slots: the node refuses no
// connection for want of a slot, only strangers' handshakes.
func TestHalfOpenFloodDoesNotLockOutPeers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sources   int // 127.0.0.2, .3, ...
		perSource int
	}{
		{"one source", 1, 300},
		{"many sources", 40, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, _ := pki.NewCA("t")
			pa := make(chanPeers, 4)
			a := startMesh(t, ca, "a", pa, nil)
			var srcs []string
			for i := range tc.sources {
				srcs = append(srcs, fmt.Sprintf("127.0.0.%d", 2+i))
			}
			ctx, cancel := context.WithCancel(context.Background())
			var closed atomic.Int64
			wg := halfOpenFlood(ctx, a.Addr(), srcs, tc.perSource, &closed)
			t.Cleanup(func() { cancel(); wg.Wait() })
			// The flood has reached the node's limit once it closes
			// connections beyond it.
			waitFor(t, "the node turning flood connections away", func() bool { return closed.Load() >= 20 })

			// A real peer (in a's peer set) joins now and replicates.
			pb := make(chanPeers, 4)
			b := startMesh(t, ca, "b", pb, nil)
			pa <- []string{b.Addr()}
			waitFor(t, "b in a's peer set", func() bool { return len(a.Status().Peers) == 1 })
			pb <- []string{a.Addr()}
			start := time.Now()
			waitFor(t, "the real peer connected both ways during the flood", func() bool {
				return len(a.OnlineNames()) == 1 && len(b.OnlineNames()) == 1
			})
			// The flood took none of the slots b needs: a refused no
			// connection for want of a peer or connection slot (b's
			// dials can still fail when the loaded test machine starves
			// a handshake past DialTimeout: logged, not failed).
			if n := a.Status().Rejected[RejectTooMany]; n != 0 {
				t.Errorf("a refused %d connections for want of a slot during a stranger flood", n)
			}
			r := record(7)
			b.h.s.Put(r, time.Now())
			b.Insert(r)
			waitFor(t, "replication during the flood", func() bool { _, ok := a.h.Lookup(r.Key); return ok })
			t.Logf("peer joined and replicated %v into the flood (%d failed dials); flood connections closed by the node: %d; rejected %v",
				time.Since(start).Round(time.Millisecond), b.Status().Peers[0].DialFailures, closed.Load(), a.Status().Rejected)
		})
	}
}
