package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/meshgate/meshgate/internal/routing"
)

// errNoCertificate fails handshakes whose SNI matches no TLS host while the
// table has no default certificate.
var errNoCertificate = errors.New("server: no certificate for server name")

// hostConfigs is the set of per-TLSHost configurations of one table. It is
// immutable once published.
type hostConfigs struct {
	table   *routing.Table
	configs map[*routing.TLSHost]*tls.Config
}

// tlsConfigs builds and caches per-host tls.Configs for the current table.
// configFor is safe for concurrent use; the hot path is two atomic loads and
// a map lookup, and the configs of one table are built once, under mu.
type tlsConfigs struct {
	holder   *routing.Holder
	sessions SessionConfigurer
	cur      atomic.Pointer[hostConfigs]
	mu       sync.Mutex // serialises rebuilds
}

// configFor returns the configuration of host h of table t, building the
// configs of t when t is the current table and not built yet. A handshake
// that still holds a replaced table gets a one-off config, so it cannot
// evict the current table's cache.
func (tc *tlsConfigs) configFor(t *routing.Table, h *routing.TLSHost) *tls.Config {
	if hc := tc.cur.Load(); hc != nil && hc.table == t {
		return hc.configs[h]
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if hc := tc.cur.Load(); hc != nil && hc.table == t {
		return hc.configs[h]
	}
	if t != tc.holder.Load() {
		if h.Certificate == nil {
			return nil
		}
		return tc.build(h)
	}
	hc := &hostConfigs{table: t, configs: make(map[*routing.TLSHost]*tls.Config)}
	add := func(h *routing.TLSHost) {
		if h == nil || h.Certificate == nil {
			return
		}
		if _, ok := hc.configs[h]; !ok {
			hc.configs[h] = tc.build(h)
		}
	}
	for _, h := range t.TLS.Exact {
		add(h)
	}
	for _, h := range t.TLS.Wildcards {
		add(h)
	}
	add(t.TLS.Default)
	tc.cur.Store(hc)
	return hc.configs[h]
}

// build makes the tls.Config for one host.
func (tc *tlsConfigs) build(h *routing.TLSHost) *tls.Config {
	p := h.Policy
	if p == nil {
		p = routing.DefaultPolicy()
	}
	cfg := &tls.Config{
		Certificates:     []tls.Certificate{*h.Certificate},
		MinVersion:       p.MinVersion,
		MaxVersion:       p.MaxVersion,
		CipherSuites:     p.CipherSuites,
		CurvePreferences: p.CurvePreferences,
		NextProtos:       []string{"h2", "http/1.1"},
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.CurvePreferences == nil {
		cfg.CurvePreferences = routing.DefaultCurves
	}
	switch {
	case p.SessionMode == routing.SessionOff:
		cfg.SessionTicketsDisabled = true
	case tc.sessions != nil:
		tc.sessions.ConfigureTLS(cfg, h)
	}
	return cfg
}

// getConfigForClient is the base config's GetConfigForClient.
func (tc *tlsConfigs) getConfigForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	t := tc.holder.Load()
	if t == nil {
		return nil, fmt.Errorf("%w %q: no routing table yet", errNoCertificate, hello.ServerName)
	}
	h := t.TLS.Lookup(hello.ServerName)
	if h == nil {
		return nil, fmt.Errorf("%w %q", errNoCertificate, hello.ServerName)
	}
	cfg := tc.configFor(t, h)
	if cfg == nil {
		return nil, fmt.Errorf("%w %q: host has no certificate", errNoCertificate, hello.ServerName)
	}
	return cfg, nil
}
