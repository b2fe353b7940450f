package server

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the listener metrics. Children used on hot paths are resolved
// once in newMetrics so recording does not hash label values.
type metrics struct {
	handshakeErrors prometheus.Counter
	open            *prometheus.GaugeVec
	accepted        *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	h2Errors        *prometheus.CounterVec

	hellosVec *prometheus.CounterVec
	hellos    [numHelloKinds]prometheus.Counter

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
			Help: "Connections closed before serving, by reason (limit, proxy_protocol, deny, no_certificate: a name a Gateway frontend does not serve).",
		}, []string{"listener", "reason"}),
		h2Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Subsystem: "http2", Name: "errors_total",
			Help: "HTTP/2 connections and streams refused, by reason: conn_<code> and stream_<code> (RFC 9113 error codes), stream_malformed, refused_stream, header_list_too_large, rapid_reset, control_flood, empty_data_flood, bad_preface.",
		}, []string{"reason"}),
	}
	m.hellosVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshgate", Subsystem: "tls", Name: "client_hellos_total",
		Help: "ClientHellos on the TLS listener by kind: tls13 (offers TLS 1.3), tls12_ticket, tls12_ticketless (no session_ticket extension), other (unparsed). Counted when the session-ID path is enabled.",
	}, []string{"kind"})
	for i, k := range helloKindNames {
		m.hellos[i] = m.hellosVec.WithLabelValues(k)
	}
	for i, kind := range []string{listenerHTTPS, listenerHTTP} {
		m.openBy[i] = m.open.WithLabelValues(kind)
		m.acceptedBy[i] = m.accepted.WithLabelValues(kind)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.handshakeErrors, m.open, m.accepted, m.rejected, m.hellosVec, m.h2Errors} {
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

// countH2Error counts an HTTP/2 refusal (h2.Config.CountError).
func (m *metrics) countH2Error(reason string) { m.h2Errors.WithLabelValues(reason).Inc() }
