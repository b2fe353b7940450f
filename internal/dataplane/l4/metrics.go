// Package l4 forwards connections at layer 4: TLS passthrough by SNI on the
// HTTPS listener (Passthrough), and plain TCP and UDP services on their own
// ports (Manager), optionally announcing the client address to backends
// with a PROXY protocol v1/v2 header.
package l4

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the L4 Prometheus collectors. The label "service" is
// "passthrough" for SNI passthrough and "tcp:<port>" / "udp:<port>" for
// Table.L4 services, so its cardinality is bounded by the configuration.
// A Metrics is safe for concurrent use; share one between a Passthrough and
// a Manager.
type Metrics struct {
	connections *prometheus.CounterVec // accepted TCP connections
	active      *prometheus.GaugeVec   // open TCP connections
	flows       *prometheus.CounterVec // created UDP flows
	activeFlows *prometheus.GaugeVec   // live UDP flows
	bytes       *prometheus.CounterVec // service, direction (in: client→backend)
	drops       *prometheus.CounterVec // service, reason
}

// Drop reasons used as the "reason" label of meshgate_l4_drops_total.
const (
	dropLimit      = "conn_limit"
	dropNoBackend  = "no_backend"
	dropDial       = "dial_error"
	dropProxyHdr   = "proxy_header_error"
	dropFlowsFull  = "flow_table_full"
	dropEvicted    = "flow_evicted"
	dropTruncated  = "datagram_truncated"
	dropPeek       = "peek_error"
	dropWriteError = "write_error"
	dropDenied     = "deny_list"
)

// NewMetrics creates the collectors and registers them with reg. A nil reg
// creates unregistered collectors (useful in tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_l4_connections_total", Help: "TCP connections accepted by the L4 proxy.",
		}, []string{"service"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshgate_l4_connections_active", Help: "TCP connections currently proxied.",
		}, []string{"service"}),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_l4_udp_flows_total", Help: "UDP flows (client address → upstream socket) created.",
		}, []string{"service"}),
		activeFlows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshgate_l4_udp_flows_active", Help: "UDP flows currently in the flow table.",
		}, []string{"service"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_l4_bytes_total", Help: "Payload bytes proxied; direction in = client to backend, out = backend to client.",
		}, []string{"service", "direction"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_l4_drops_total", Help: "Connections, flows or datagrams dropped, by reason.",
		}, []string{"service", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connections, m.active, m.flows, m.activeFlows, m.bytes, m.drops} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("l4: register metrics: %w", err)
		}
	}
	return m, nil
}

// svcMetrics caches the label-resolved collectors of one service so the hot
// path does not look labels up.
type svcMetrics struct {
	conns, flows, bytesIn, bytesOut prometheus.Counter
	active, activeFlows             prometheus.Gauge
	denied                          prometheus.Counter // drops{reason=deny_list}, resolved once: a flood of denied datagrams takes no lock here
	m                               *Metrics
	service                         string
}

func (m *Metrics) forService(service string) *svcMetrics {
	return &svcMetrics{
		conns:       m.connections.WithLabelValues(service),
		flows:       m.flows.WithLabelValues(service),
		bytesIn:     m.bytes.WithLabelValues(service, "in"),
		bytesOut:    m.bytes.WithLabelValues(service, "out"),
		active:      m.active.WithLabelValues(service),
		activeFlows: m.activeFlows.WithLabelValues(service),
		denied:      m.drops.WithLabelValues(service, dropDenied),
		m:           m,
		service:     service,
	}
}

func (s *svcMetrics) drop(reason string) { s.m.drops.WithLabelValues(s.service, reason).Inc() }
