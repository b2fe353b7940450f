package standalone

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Source's Prometheus metrics; a nil *metrics records
// nothing.
type metrics struct {
	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	lastOK      prometheus.Gauge
	problems    prometheus.Gauge
	generation  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_standalone_reloads_total",
			Help: "Manifest reload attempts by result (success, failure).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshgate_standalone_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last reload that published a table.",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshgate_standalone_last_reload_successful",
			Help: "1 if the last reload published a table, 0 if it failed and the previous table is still served.",
		}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshgate_standalone_build_problems",
			Help: "Problems (skipped parts) in the last published table.",
		}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshgate_standalone_table_generation",
			Help: "Generation of the last published routing table.",
		}),
	}
	for _, c := range []prometheus.Collector{m.reloads, m.lastSuccess, m.lastOK, m.problems, m.generation} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	// Both series exist from the start, so rate() works before a failure.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m, nil
}

func (m *metrics) observe(res Result, now time.Time) {
	if m == nil {
		return
	}
	if res.Err != nil {
		m.reloads.WithLabelValues("failure").Inc()
		m.lastOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.lastOK.Set(1)
	m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	m.problems.Set(float64(len(res.Problems)))
	m.generation.Set(float64(res.Generation))
}
