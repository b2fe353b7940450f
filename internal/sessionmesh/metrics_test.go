package sessionmesh

import (
	"crypto/tls"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsAndStatus(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	ca, _ := newCA(t)
	nodes, _ := cluster(t, 2, Stateful)
	n := newTestNode(t, ca, "metered", Stateful, func(c *Config) { c.Registerer = reg })
	c := newClient(tls.VersionTLS13)
	c.mustConnect(t, n.tlsAddr)
	c.mustConnect(t, n.tlsAddr)
	_ = nodes
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
		if mf.GetName() != "meshgate_tls_handshakes_total" {
			continue
		}
		// One handshake count under two names: the listener-level family
		// shows what meshgate_sessionmesh_handshakes_total shows.
		var full, resumed float64
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "resumed" && lp.GetValue() == "true" {
					resumed += m.GetCounter().GetValue()
				} else if lp.GetName() == "resumed" {
					full += m.GetCounter().GetValue()
				}
			}
		}
		if full != 1 || resumed != 1 {
			t.Errorf("meshgate_tls_handshakes_total: %v full, %v resumed; want 1 and 1", full, resumed)
		}
	}
	if !got["meshgate_tls_handshakes_total"] {
		t.Error("meshgate_tls_handshakes_total missing")
	}
	for _, want := range []string{"records", "resumption_hits_total", "resumption_misses_total",
		"handshakes_total", "wraps_total", "bytes_in_total", "rejected_connections_total", "ready"} {
		if !got["meshgate_sessionmesh_"+want] {
			t.Errorf("metric %s missing", want)
		}
	}
	rec := httptest.NewRecorder()
	nodes[0].StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/status/sessionmesh", nil))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "node-0" || st.Mesh == nil || st.Mesh.PeersOnline != 1 || !st.Ready {
		t.Fatalf("status %s", rec.Body.String())
	}
	if strings.Contains(rec.Body.String(), "secret") {
		t.Fatal("status leaks key material")
	}
	if err := reg.Register(n.m); err == nil {
		t.Fatal("double registration accepted")
	}
}
