package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// A flush that fails counts its records as dropped, and not also as sent
// (they were counted as sent before Flush, then again as drops).
func TestFailedFlushCountsDropsOnly(t *testing.T) {
	m := &Mesh{cfg: Config{Handler: newMemHandler(), Log: logr.Discard()}}
	m.cfg.setDefaults()
	m.stats.init()
	p := newPeer(m, "192.0.2.1:7946")
	for i := range 10 {
		p.enqueueRecord(record(uint64(i)))
	}
	near, far := net.Pipe()
	far.Close() // every write fails
	c := newConn(m, tls.Client(near, &tls.Config{InsecureSkipVerify: true}), p)
	if err := c.flushPeer(&batch{}); err == nil {
		t.Fatal("flush to a closed connection succeeded")
	}
	if sent, drops := p.sent.Load(), p.drops.Load(); sent != 0 || drops != 10 {
		t.Fatalf("after a failed flush of 10 records: sent %d, dropped %d; want 0 and 10", sent, drops)
	}
	if d := m.stats.drops.Load(); d != 10 {
		t.Fatalf("mesh drops %d, want 10", d)
	}
}

// A successful flush counts its records as sent once.
func TestFlushCountsSent(t *testing.T) {
	ca, _ := pki.NewCA("t")
	a, b := pair(t, ca)
	for i := range 25 {
		a.Insert(record(uint64(i)))
	}
	waitFor(t, "records on b", func() bool { return b.h.s.Len() == 25 })
	st := a.Status()
	if len(st.Peers) != 1 || st.Peers[0].Sent != 25 || st.Peers[0].Drops != 0 {
		t.Fatalf("peer status %+v, want 25 sent, 0 dropped", st.Peers)
	}
}

// Replication latency is measured on the receiver's clock only: a peer
// whose clock is an hour behind does not make records look an hour old.
func TestReplicationLatencyIgnoresClockOffset(t *testing.T) {
	var got []time.Duration
	m := &Mesh{cfg: Config{Handler: newMemHandler(), Log: logr.Discard(),
		OnReplicated: func(d time.Duration) { got = append(got, d) }}}
	c := &conn{m: m, peerName: "skewed"}
	now := time.Now()
	const offset = -time.Hour // the issuer's clock
	issuer := func(t time.Time) int64 { return t.Add(offset).UnixNano() }

	r := record(1)
	r.Created = issuer(now.Add(-time.Millisecond))
	if err := c.handle(&wire.Insert{Records: []store.Record{r}}, now); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("observed %v before any heartbeat related the clocks", got)
	}
	// Heartbeats with 200 µs and 50 µs of transit: the fastest sets the
	// offset estimate.
	for _, transit := range []time.Duration{200 * time.Microsecond, 50 * time.Microsecond} {
		sent := now.Add(-transit)
		if err := c.handle(&wire.Heartbeat{Sent: issuer(sent)}, now); err != nil {
			t.Fatal(err)
		}
	}
	r.Created = issuer(now.Add(-3 * time.Millisecond)) // inserted 3 ms ago, issuer time
	if err := c.handle(&wire.Insert{Records: []store.Record{r}}, now); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("observations %v, want one", got)
	}
	// 3 ms less the fastest transit (50 µs) the estimate cannot see.
	if want := 3*time.Millisecond - 50*time.Microsecond; got[0] != want {
		t.Fatalf("latency %v, want %v (the clock offset of %v must not show)", got[0], want, offset)
	}
}

func TestClassifyTLS(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errNoClientCert, RejectNoClientCert},
		{fmt.Errorf("handshake: %w", errNoClientCert), RejectNoClientCert},
		{fmt.Errorf("%w: %w", errBadCert, errors.New("x509: unknown authority")), RejectBadCert},
		{io.EOF, RejectHandshake},
		{errors.New("tls: client didn't provide a certificate"), RejectHandshake}, // a message is not a reason
	} {
		if got := classifyTLS(tc.err); got != tc.want {
			t.Errorf("classifyTLS(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

// failingListener fails Accept fails times, then blocks until closed.
type failingListener struct {
	net.Listener
	fails   int
	calls   atomic.Int32
	blocked chan struct{}
	closed  chan struct{}
}

type tempErr struct{}

func (tempErr) Error() string { return "accept: too many open files" }

func (l *failingListener) Accept() (net.Conn, error) {
	if n := int(l.calls.Add(1)); n <= l.fails {
		return nil, tempErr{}
	} else if n == l.fails+1 {
		close(l.blocked)
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *failingListener) Close() error { close(l.closed); return nil }

// Accept errors back off exponentially (5 ms, 10 ms, 20 ms, ...) instead of
// retrying every 10 ms, and the wait ends with the mesh.
func TestAcceptErrorsBackOff(t *testing.T) {
	if d := nextAcceptBackoff(0); d != acceptBackoffMin {
		t.Fatalf("first backoff %v", d)
	}
	d := time.Duration(0)
	for range 20 {
		d = nextAcceptBackoff(d)
	}
	if d != acceptBackoffMax {
		t.Fatalf("backoff not capped: %v", d)
	}

	ln := &failingListener{fails: 6, blocked: make(chan struct{}), closed: make(chan struct{})}
	m := &Mesh{cfg: Config{MaxInbound: 1, Log: logr.Discard()}, ln: ln}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		m.acceptLoop(ctx, nil)
	}()
	<-ln.blocked
	// Timers never fire early, so six failures cost at least
	// 5+10+20+40+80+160 ms with backoff (a fixed 10 ms pause: 60 ms).
	if el, want := time.Since(start), 315*time.Millisecond; el < want {
		t.Fatalf("six accept failures retried within %v, want backoff of at least %v", el, want)
	}
	ln.Close()
	cancel()
	<-done

	// A loop waiting out its backoff returns when the mesh stops, without
	// accepting again (a plain sleep would call Accept once more).
	ln2 := &failingListener{fails: 1 << 30, blocked: make(chan struct{}), closed: make(chan struct{})}
	m2 := &Mesh{cfg: Config{MaxInbound: 1, Log: logr.Discard()}, ln: ln2}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() {
		defer close(done2)
		m2.acceptLoop(ctx2, nil)
	}()
	// Now in a 40 ms wait, or about to be.
	waitFor(t, "four failed accepts", func() bool { return ln2.calls.Load() >= 4 })
	cancel2()
	calls := ln2.calls.Load()
	select {
	case <-done2:
	case <-time.After(5 * time.Second):
		t.Fatal("accept loop did not stop with the mesh")
	}
	if n := ln2.calls.Load(); n != calls {
		t.Fatalf("Accept called %d more times after the mesh stopped", n-calls)
	}
}
