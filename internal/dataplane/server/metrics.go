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

	byKind    *prometheus.CounterVec
	kinds     [numKinds][2]prometheus.Counter // [kind][full, resumed]
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
	m.byKind = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshgate", Subsystem: "tls", Name: "handshakes_by_kind_total",
		Help: "Completed TLS handshakes by resumption kind (session_id: the TLS 1.2 session-ID path; tls12_ticket: crypto/tls TLS 1.2; tls13_psk: TLS 1.3) and whether they resumed.",
	}, []string{"kind", "resumed"})
	m.hellosVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshgate", Subsystem: "tls", Name: "client_hellos_total",
		Help: "ClientHellos on the TLS listener by kind: tls13 (offers TLS 1.3), tls12_ticket, tls12_ticketless (no session_ticket extension), other (unparsed). Counted when the session-ID path is enabled.",
	}, []string{"kind"})
	for i, k := range kindNames {
		for j, r := range []string{"false", "true"} {
			m.kinds[i][j] = m.byKind.WithLabelValues(k, r)
		}
	}
	for i, k := range helloKindNames {
		m.hellos[i] = m.hellosVec.WithLabelValues(k)
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
	for _, c := range []prometheus.Collector{m.handshakes, m.handshakeErrors, m.open, m.accepted, m.rejected, m.byKind, m.hellosVec} {
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

// Resumption kinds (label values of meshgate_tls_handshakes_by_kind_total).
const (
	kindSessionID = iota
	kindTLS12Ticket
	kindTLS13PSK
	numKinds
)

var kindNames = [numKinds]string{"session_id", "tls12_ticket", "tls13_psk"}

// kindOf maps a crypto/tls handshake's version to its resumption kind.
func kindOf(version uint16) int {
	if version >= tls.VersionTLS13 {
		return kindTLS13PSK
	}
	return kindTLS12Ticket
}

func (m *metrics) handshakeKind(kind int, resumed bool) {
	r := 0
	if resumed {
		r = 1
	}
	m.kinds[kind][r].Inc()
}
