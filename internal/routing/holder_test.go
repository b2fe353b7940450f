package routing

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestHolderSequence(t *testing.T) {
	var h Holder
	if h.Load() != nil || h.Sequence() != 0 {
		t.Fatal("zero Holder is not empty")
	}
	ch := h.Changed()
	if h.Changed() != ch {
		t.Fatal("two waiters before one Store got different channels")
	}
	h.Store(&Table{Generation: 7})
	select {
	case <-ch:
	default:
		t.Fatal("Store did not close the Changed channel")
	}
	if h.Sequence() != 1 || h.Load().Generation != 7 {
		t.Fatalf("sequence %d, table %v", h.Sequence(), h.Load())
	}
	next := h.Changed()
	if next == ch {
		t.Fatal("Changed after a Store returned the closed channel")
	}
	select {
	case <-next:
		t.Fatal("Changed channel closed without a Store")
	default:
	}
}

// A waiter sees a table stored concurrently with its Wait, never misses the
// wake-up, and returns as soon as cond holds.
func TestHolderWait(t *testing.T) {
	var h Holder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	got := make([]uint64, 8)
	for i := range got {
		wg.Go(func() {
			tb, err := h.Wait(ctx, func(tb *Table) bool { return tb.Generation >= 50 })
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = tb.Generation
		})
	}
	for g := uint64(1); g <= 100; g++ {
		h.Store(&Table{Generation: g})
	}
	wg.Wait()
	for i, g := range got {
		if g < 50 {
			t.Errorf("waiter %d returned generation %d", i, g)
		}
	}
	if h.Sequence() != 100 {
		t.Errorf("sequence %d after 100 stores", h.Sequence())
	}
}

func TestHolderWaitContext(t *testing.T) {
	var h Holder
	h.Store(&Table{Generation: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.Wait(ctx, func(*Table) bool { return false })
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v", err)
	}
}
