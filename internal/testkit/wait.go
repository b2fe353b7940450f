package testkit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Poll is how often WaitFor checks its condition.
const Poll = 5 * time.Millisecond

// WaitFor checks cond every Poll until it holds and fails t (Fatal) when it
// still does not after timeout, naming what it waited for. It is the one
// polling helper of the tests: for a state that has no event or hook to
// wait on (a counter another goroutine moves, a process's output), never
// for proving that something did not happen.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Until(timeout, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Until is WaitFor for code without a testing.TB (helpers returning errors,
// process-level harnesses): it returns an error when cond still does not
// hold after timeout.
func Until(timeout time.Duration, cond func() bool) error {
	if cond() {
		return nil
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(Poll)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return nil
			}
		case <-deadline.C:
			if cond() {
				return nil
			}
			return fmt.Errorf("still not true after %v", timeout)
		}
	}
}

// Background runs run on a goroutine until t ends: t's cleanup cancels
// run's context and waits up to stopWithin for it to return, reporting a
// non-nil error, or that it did not stop, as an error of what. The channel
// returned is closed when run returns (early, if it fails to start).
func Background(t testing.TB, what string, stopWithin time.Duration, run func(context.Context) error) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var err error
	go func() {
		err = run(ctx)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(stopWithin):
			t.Errorf("%s did not stop within %v", what, stopWithin)
		}
	})
	return stopped
}
