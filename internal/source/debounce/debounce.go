// Package debounce is the hold-off both sources put between a change and
// the rebuild it triggers, the way Contour's event handler does: a change
// arms a short hold-off; each further change pushes the rebuild back by the
// hold-off again, but never beyond MaxDelay after the oldest change not yet
// built. A burst of events (an informer's initial list, `kubectl apply` of
// several objects, an editor saving files) then costs one build, and a
// steady stream of changes still reaches the data plane every MaxDelay.
//
// The published result is signalled by routing.Holder's sequence
// (Holder.Changed, Holder.Wait): tests and the data plane wait on it.
package debounce

import "time"

// Defaults for both sources.
//
// The hold-off must cover the gap between the events of one logical change
// and no more: the API server delivers the objects of one `kubectl apply`
// a few milliseconds apart, and a longer wait only delays every change
// (an EndpointSlice losing a terminated pod most of all). The standalone
// source only notices file changes at its poll ticks (1 s) or on SIGHUP,
// after the files were written, so a longer hold-off buys it nothing. The
// max delay bounds how stale the data plane may be under a continuous
// stream of changes; at 100 ms a table is rebuilt at most ten times a
// second then, which a build of thousands of objects affords, and a single
// change is served well within BenchmarkChangeToServing's 100 ms target.
const (
	DefaultHoldOff  = 10 * time.Millisecond
	DefaultMaxDelay = 100 * time.Millisecond
)

// Timer debounces the changes seen by one owner goroutine, which calls
// Changed for every change, selects on C and calls Fired when C delivers.
// It is not safe for concurrent use.
type Timer struct {
	holdOff, maxDelay time.Duration
	now               func() time.Time
	t                 *time.Timer
	pending           bool
	first             time.Time // receipt of the oldest change not yet built
}

// New returns an idle Timer. holdOff <= 0 and maxDelay <= 0 mean the
// defaults; a maxDelay shorter than holdOff is raised to holdOff.
func New(holdOff, maxDelay time.Duration) *Timer {
	if holdOff <= 0 {
		holdOff = DefaultHoldOff
	}
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	maxDelay = max(maxDelay, holdOff)
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Timer{holdOff: holdOff, maxDelay: maxDelay, now: time.Now, t: t}
}

// Changed records a change received at at (the zero time means now) and
// re-arms the timer.
func (d *Timer) Changed(at time.Time) {
	now := d.now()
	if at.IsZero() || at.After(now) {
		at = now
	}
	if !d.pending {
		d.pending, d.first = true, at
	}
	d.t.Reset(d.wait(now))
}

// wait is how long after now the build is due: the hold-off, cut short so
// that it happens at most maxDelay after the oldest pending change.
func (d *Timer) wait(now time.Time) time.Duration {
	return max(0, min(d.holdOff, d.first.Add(d.maxDelay).Sub(now)))
}

// C delivers when the pending changes are due for a build.
func (d *Timer) C() <-chan time.Time { return d.t.C }

// Fired ends the pending period after C delivered and returns when its
// oldest change was received. The caller builds next.
func (d *Timer) Fired() time.Time {
	first := d.first
	d.pending, d.first = false, time.Time{}
	return first
}

// Pending reports whether changes wait for a build.
func (d *Timer) Pending() bool { return d.pending }

// Stop releases the timer; pending changes are forgotten.
func (d *Timer) Stop() {
	d.t.Stop()
	d.pending = false
}
