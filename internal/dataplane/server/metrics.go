package server

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the listener metrics. Children used on hot paths are resolved
// once in newMetrics so recording does not hash label values.
type metrics struct {
	handshakes      *prometheus.CounterVec
	handshakeErrors prometheus.Counter
	open            *prometheus.GaugeVec
	accepted        *prometheus.CounterVec
	rejected        *prometheus.CounterVec

	hs [2][2]prometheus.Counter // [tls12, tls13][full, resumed]

	// Per-listener children, indexed by listenerIndex: touched on every
	// accepted and every closed connection.
	openBy     [2]prometheus.Gauge
	acceptedBy [2]prometheus.Counter
}

// listenerIndex maps a listener kind to its slot in the per-listener
// children.
func listenerIndex(kind string) int {
	if kind == listenerHTTP {
		return 1
	}
	return 0
}

const (
	listenerHTTPS = "https"
	listenerHTTP  = "http"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "tls", Name: "handshakes_total",
			Help: "Completed TLS handshakes by protocol version and whether the session was resumed.",
		}, []string{"version", "resumed"}),
		handshakeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "tls", Name: "handshake_errors_total",
			Help: "TLS handshakes that failed or timed out.",
		}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshgate", Subsystem: "listener", Name: "connections_open",
			Help: "Open client connections, including hijacked and passthrough ones.",
		}, []string{"listener"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "listener", Name: "connections_total",
			Help: "Accepted client connections.",
		}, []string{"listener"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "listener", Name: "connections_rejected_total",
			Help: "Connections closed before serving, by reason (limit, proxy_protocol).",
		}, []string{"listener", "reason"}),
	}
	for i, v := range []string{"1.2", "1.3"} {
		for j, r := range []string{"false", "true"} {
			m.hs[i][j] = m.handshakes.WithLabelValues(v, r)
		}
	}
	for i, kind := range []string{listenerHTTPS, listenerHTTP} {
		m.openBy[i] = m.open.WithLabelValues(kind)
		m.acceptedBy[i] = m.accepted.WithLabelValues(kind)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.handshakes, m.handshakeErrors, m.open, m.accepted, m.rejected} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("server: metrics already registered (one Server per Registerer): %w", err)
			}
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) handshake(cs tls.ConnectionState) {
	v := 0
	switch cs.Version {
	case tls.VersionTLS12:
	case tls.VersionTLS13:
		v = 1
	default:
		m.handshakes.WithLabelValues(tls.VersionName(cs.Version), fmt.Sprint(cs.DidResume)).Inc()
		return
	}
	r := 0
	if cs.DidResume {
		r = 1
	}
	m.hs[v][r].Inc()
}
