package proxy

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// methods are the request methods with their own label value; every other
// method is counted as "OTHER" so clients cannot blow up cardinality.
var methods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace, "OTHER",
}

// classes are status classes; index 0 collects statuses outside 100..599.
var classes = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func methodIndex(m string) int {
	for i := 0; i < len(methods)-1; i++ {
		if methods[i] == m {
			return i
		}
	}
	return len(methods) - 1
}

func classIndex(status int) int {
	if status < 100 || status > 599 {
		return 0
	}
	return status / 100
}

// metrics are the request metrics of one Handler.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	upstream *prometheus.CounterVec
	learn    *learnMetrics
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "http", Name: "requests_total",
			Help: "Proxied HTTP requests by backend, method and status class.",
		}, []string{"backend", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "meshgate", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time from request headers to the end of the response, by backend.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"backend"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "http", Name: "upstream_errors_total",
			Help: "Failed upstream attempts by backend and reason (connect, timeout, body_too_large, client_body_timeout, canceled, other; mirror for failed and mirror_dropped for shed mirrored requests).",
		}, []string{"backend", "reason"}),
		learn: newLearnMetrics(),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.upstream, m.learn.lookups, m.learn.writes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy: register metrics: %w", err)
		}
	}
	return m, nil
}

// backendMetrics caches the metric children of one backend name so the hot
// path neither hashes label values nor allocates after the first request of
// each (method, class).
type backendMetrics struct {
	name     string
	m        *metrics
	duration prometheus.Observer
	requests [len(methods)][len(classes)]atomic.Pointer[prometheus.Counter]
}

func newBackendMetrics(m *metrics, name string) *backendMetrics {
	return &backendMetrics{name: name, m: m, duration: m.duration.WithLabelValues(name)}
}

func (b *backendMetrics) request(method string, status int) prometheus.Counter {
	mi, ci := methodIndex(method), classIndex(status)
	slot := &b.requests[mi][ci]
	if c := slot.Load(); c != nil {
		return *c
	}
	c := b.m.requests.WithLabelValues(b.name, methods[mi], classes[ci])
	slot.Store(&c)
	return c
}
