package routing

import (
	"context"
	"sync"
	"sync/atomic"
)

// Holder is where a source publishes tables and the data plane reads them:
// the one hand-off between the two. It also counts what it published (its
// sequence, in the manner of Contour's EventHandler.Sequence), so that a
// subscriber or a test waits for the next table instead of polling.
//
// Load, Sequence and Changed are safe for concurrent use and Load never
// blocks; Store may be called from one goroutine at a time (the source's
// owner loop). The zero value holds no table and is ready to use.
type Holder struct {
	p   atomic.Pointer[Table]
	seq atomic.Uint64

	mu      sync.Mutex
	changed chan struct{} // closed by the next Store; nil while nobody waits
}

// Load returns the current table, or nil before the first Store.
func (h *Holder) Load() *Table { return h.p.Load() }

// Store publishes t and wakes everyone waiting on Changed. The caller must
// not modify t afterwards.
func (h *Holder) Store(t *Table) {
	h.mu.Lock()
	h.p.Store(t)
	h.seq.Add(1)
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	h.mu.Unlock()
}

// Sequence returns how many tables were stored so far (0 before the first
// Store). It increases by exactly one per Store.
func (h *Holder) Sequence() uint64 { return h.seq.Load() }

// Changed returns a channel that the next Store closes. Take it before
// reading the table it is meant to follow:
//
//	ch := h.Changed()
//	t := h.Load() // if this is not yet the table wanted, <-ch and retry
func (h *Holder) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

// Wait returns the first table, current or stored later, for which cond
// returns true, or ctx's error when ctx ends first. cond runs on the
// caller's goroutine, once now and once after each Store it observes (a
// burst of Stores may be seen as one); it is never called with nil.
func (h *Holder) Wait(ctx context.Context, cond func(*Table) bool) (*Table, error) {
	for {
		ch := h.Changed()
		if t := h.Load(); t != nil && cond(t) {
			return t, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
