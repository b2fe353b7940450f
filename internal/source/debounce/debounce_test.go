package debounce

import (
	"testing"
	"time"
)

// fakeNow is a settable clock for the deadline arithmetic; the timer
// itself still runs on real time.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time { return f.t }

func TestWait(t *testing.T) {
	base := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		steps []time.Duration // receipt times of changes, relative to base
		want  time.Duration   // wait armed after the last one
	}{
		{"one change waits the hold-off", []time.Duration{0}, 10 * ms},
		{"a later change pushes it back", []time.Duration{0, 5 * ms}, 10 * ms},
		{"close to max delay it is cut short", []time.Duration{0, 30 * ms, 60 * ms, 95 * ms}, 5 * ms},
		{"past max delay it is due at once", []time.Duration{0, 120 * ms}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeNow{}
			d := New(10*ms, 100*ms)
			d.now = clk.now
			defer d.Stop()
			for _, s := range tc.steps {
				clk.t = base.Add(s)
				d.Changed(clk.t)
			}
			if got := d.wait(clk.t); got != tc.want {
				t.Errorf("wait = %v, want %v", got, tc.want)
			}
			if !d.first.Equal(base) {
				t.Errorf("oldest change %v, want %v", d.first, base)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	d := New(0, 0)
	if d.holdOff != DefaultHoldOff || d.maxDelay != DefaultMaxDelay {
		t.Errorf("defaults %v/%v", d.holdOff, d.maxDelay)
	}
	if d := New(time.Second, time.Millisecond); d.maxDelay != time.Second {
		t.Errorf("max delay %v below the hold-off", d.maxDelay)
	}
}

// The timer fires once for a burst and reports the burst's oldest change.
func TestFiresOncePerBurst(t *testing.T) {
	d := New(time.Millisecond, 50*time.Millisecond)
	defer d.Stop()
	first := time.Now()
	for i := range 100 {
		d.Changed(first.Add(time.Duration(i)))
	}
	<-d.C()
	if !d.Pending() {
		t.Fatal("not pending before Fired")
	}
	if got := d.Fired(); !got.Equal(first) {
		t.Errorf("Fired = %v, want the oldest change %v", got, first)
	}
	if d.Pending() {
		t.Fatal("still pending after Fired")
	}
	// A new change starts a new period, dated by itself.
	again := time.Now()
	d.Changed(again)
	<-d.C()
	if got := d.Fired(); !got.Equal(again) {
		t.Errorf("second period dated %v, want %v", got, again)
	}
}
