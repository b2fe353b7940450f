package l4

import (
	"context"
	"net"
	"sync"
)

// tracker owns the set of proxied connections of a Passthrough or Manager so
// that Shutdown can wait for them and, at its deadline, close them.
type tracker struct {
	ctx    context.Context // canceled when shutdown starts: aborts dials
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newTracker() *tracker {
	ctx, cancel := context.WithCancel(context.Background())
	return &tracker{ctx: ctx, cancel: cancel, conns: make(map[net.Conn]struct{})}
}

// add registers c; it returns false once shutdown has begun.
func (t *tracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *tracker) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

// goFunc runs f in a goroutine counted by the tracker, unless shutdown has
// begun.
func (t *tracker) goFunc(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// shutdown stops new registrations, waits for tracked work until ctx is
// done, then closes every tracked connection and waits for the rest.
func (t *tracker) shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		t.cancel()
		return nil
	case <-ctx.Done():
	}
	t.cancel()
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	<-done
	return ctx.Err()
}
