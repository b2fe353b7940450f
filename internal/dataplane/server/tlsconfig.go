package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/tls12"
)

// errNoCertificate fails handshakes whose SNI matches no TLS host while the
// table has no default certificate.
var errNoCertificate = errors.New("server: no certificate for server name")

// hostConfigs is the set of per-TLSHost configurations of one table. It is
// immutable once published.
type hostConfigs struct {
	table   *routing.Table
	configs map[*routing.TLSHost]*tls.Config
	// tls12 holds the session-ID path's configs (see tls12route.go): only
	// hosts it may serve have one.
	tls12 map[*routing.TLSHost]*tls12.Config
}

// tlsConfigs builds and caches per-host tls.Configs for the current table.
// configFor is safe for concurrent use; the hot path is two atomic loads and
// a map lookup, and the configs of one table are built once, under mu.
type tlsConfigs struct {
	holder     *routing.Holder
	sessions   SessionConfigurer
	sessionIDs SessionIDCaches
	cur        atomic.Pointer[hostConfigs]
	mu         sync.Mutex // serialises rebuilds
}

// configFor returns the configuration of host h of table t, building the
// configs of t when t is the current table and not built yet. A handshake
// that still holds a replaced table gets a one-off config, so it cannot
// evict the current table's cache.
func (tc *tlsConfigs) configFor(t *routing.Table, h *routing.TLSHost) *tls.Config {
	return tc.hostConfigs(t, h).configs[h]
}

// tls12For returns the session-ID path's configuration of host h of table
// t, or nil when the host is not served on that path.
func (tc *tlsConfigs) tls12For(t *routing.Table, h *routing.TLSHost) *tls12.Config {
	return tc.hostConfigs(t, h).tls12[h]
}

// hostConfigs returns the configs of t, building them when t is the
// current table and not built yet; a handshake still holding a replaced
// table gets one-off configs for h.
func (tc *tlsConfigs) hostConfigs(t *routing.Table, h *routing.TLSHost) *hostConfigs {
	if hc := tc.cur.Load(); hc != nil && hc.table == t {
		return hc
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if hc := tc.cur.Load(); hc != nil && hc.table == t {
		return hc
	}
	hc := &hostConfigs{table: t, configs: make(map[*routing.TLSHost]*tls.Config), tls12: make(map[*routing.TLSHost]*tls12.Config)}
	add := func(h *routing.TLSHost) {
		if h == nil || h.Certificate == nil {
			return
		}
		if _, ok := hc.configs[h]; !ok {
			hc.configs[h] = tc.build(h)
			if c := tc.buildTLS12(h); c != nil {
				hc.tls12[h] = c
			}
		}
	}
	if t != tc.holder.Load() {
		add(h)
		return hc
	}
	for _, h := range t.TLS.Exact {
		add(h)
	}
	for _, h := range t.TLS.Wildcards {
		add(h)
	}
	add(t.TLS.Default)
	tc.cur.Store(hc)
	return hc
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
	tc.sessions.ConfigureTLS(cfg, sessionHost(h, p))
	return cfg
}

// sessionHost translates a TLS host and its policy into the session
// layer's terms.
func sessionHost(h *routing.TLSHost, p *routing.TLSPolicy) sessionmesh.Host {
	sh := sessionmesh.Host{
		Lifetime:          p.SessionLifetime,
		TicketKeyRotation: p.TicketKeyRotation,
		Policy:            p.Name,
		PolicyGeneration:  p.Generation,
	}
	switch p.SessionMode {
	case routing.SessionTicketKeys:
		sh.Mode = sessionmesh.TicketKeys
	case routing.SessionOff:
		sh.Mode = sessionmesh.Off
	default:
		sh.Mode = sessionmesh.Stateful
	}
	if h.Certificate != nil && len(h.Certificate.Certificate) > 0 {
		sh.Leaf = h.Certificate.Certificate[0]
	}
	return sh
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
