package ratelimit

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descDecisions = prometheus.NewDesc("meshgate_ratelimit_requests_total",
		"Requests decided by a limit, by limit and result (admitted or rejected).", []string{"limit", "result"}, nil)
	descTracked = prometheus.NewDesc("meshgate_ratelimit_tracked_keys",
		"Keys a limit tracks on this replica (own and peers' counts).", []string{"limit"}, nil)
	descEvicted = prometheus.NewDesc("meshgate_ratelimit_evictions_total",
		"Keys of a limit evicted because the limiter tracked its maximum of keys.", []string{"limit"}, nil)
	descCounts = prometheus.NewDesc("meshgate_ratelimit_counts_total",
		"Per-key counts reported to peers (reported), applied from peers (merged), or dropped because the limit is unknown here (unknown).",
		[]string{"kind"}, nil)
	descRemoved = prometheus.NewDesc("meshgate_ratelimit_removed_total",
		"Limits removed because their configuration went (limits), and the keys freed with them (keys).", []string{"kind"}, nil)
)

// Describe implements prometheus.Collector.
func (l *Limiter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDecisions, descTracked, descEvicted, descCounts, descRemoved} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (l *Limiter) Collect(ch chan<- prometheus.Metric) {
	lims := *l.limits.Load()
	names := make([]*Limit, 0, len(lims))
	for _, lm := range lims {
		names = append(names, lm)
	}
	slices.SortFunc(names, func(a, b *Limit) int {
		if a.name < b.name {
			return -1
		}
		return 1
	})
	for _, lm := range names {
		st := lm.Stats()
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(st.Admitted), st.Name, "admitted")
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(st.Rejected), st.Name, "rejected")
		ch <- prometheus.MustNewConstMetric(descTracked, prometheus.GaugeValue, float64(st.TrackedKeys), st.Name)
		ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.EvictedKeys), st.Name)
	}
	st := l.Stats()
	ch <- prometheus.MustNewConstMetric(descCounts, prometheus.CounterValue, float64(st.Reported), "reported")
	ch <- prometheus.MustNewConstMetric(descCounts, prometheus.CounterValue, float64(st.Merged), "merged")
	ch <- prometheus.MustNewConstMetric(descCounts, prometheus.CounterValue, float64(st.Unknown), "unknown")
	ch <- prometheus.MustNewConstMetric(descRemoved, prometheus.CounterValue, float64(st.RemovedLimits), "limits")
	ch <- prometheus.MustNewConstMetric(descRemoved, prometheus.CounterValue, float64(st.RemovedKeys), "keys")
}
