package testkit

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricSum gathers g and sums, over the series of family name whose
// labels include every pair of want (nil: all series), counter and gauge
// values and histogram sample counts; n is the number of series summed.
// A family that is absent sums to 0 with n 0.
func MetricSum(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) (sum float64, n int) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue series
				}
			}
			n++
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			case m.Untyped != nil:
				sum += m.Untyped.GetValue()
			}
		}
	}
	return sum, n
}

// MetricValue is MetricSum for one series that must exist: it fails t
// when no series of name matches want.
func MetricValue(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	sum, n := MetricSum(t, g, name, want)
	if n == 0 {
		t.Fatalf("metric %s%v not found", name, want)
	}
	return sum
}
