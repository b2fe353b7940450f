package http3

import (
	"crypto/tls"
	"runtime"
	"sync"
	"weak"

	qhttp3 "github.com/quic-go/quic-go/http3"
)

// maxCachedConfigs bounds the per-host config cache; when full it is
// emptied (entries are also dropped when their source config is collected).
const maxCachedConfigs = 1024

// h3Configs derives QUIC-ready tls.Configs (NextProtos ["h3"], TLS 1.3,
// 0-RTT policy) from the data plane's configs, once per source config.
type h3Configs struct {
	allow0RTT func(serverName string) bool // nil: never
	refused   func()                       // counts sessions whose early data was refused

	mu sync.Mutex
	m  map[weak.Pointer[tls.Config]]*tls.Config
}

// base derives the listener's config from the data plane's base config: its
// GetConfigForClient, if any, is wrapped so that the per-host config it
// returns is replaced by a cached h3 clone.
func (h *h3Configs) base(src *tls.Config) *tls.Config {
	c := h.derive(src)
	if gcfc := src.GetConfigForClient; gcfc != nil {
		c.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			hc, err := gcfc(chi)
			if hc == nil || err != nil {
				return hc, err
			}
			return h.cached(hc), nil
		}
	}
	return c
}

// cached returns the derived config for src, building it on first use.
// Entries are keyed by src's address and die with src, so a config the data
// plane replaces on a table swap does not leak.
func (h *h3Configs) cached(src *tls.Config) *tls.Config {
	key := weak.Make(src)
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.m[key]; c != nil {
		return c
	}
	if h.m == nil || len(h.m) >= maxCachedConfigs {
		h.m = make(map[weak.Pointer[tls.Config]]*tls.Config)
	}
	c := h.derive(src)
	c.GetConfigForClient = nil // crypto/tls does not call it on a returned config
	h.m[key] = c
	runtime.AddCleanup(src, func(k weak.Pointer[tls.Config]) {
		h.mu.Lock()
		delete(h.m, k)
		h.mu.Unlock()
	}, key)
	return c
}

// derive clones src for QUIC: ALPN h3 only, TLS 1.3 only, and an
// UnwrapSession that clears SessionState.EarlyData for server names whose
// policy forbids 0-RTT (crypto/tls then rejects the early data and the
// client resends in 1-RTT).
func (h *h3Configs) derive(src *tls.Config) *tls.Config {
	// Initialize src's automatic ticket keys before cloning so the clone
	// shares them (golang/go#60506); harmless when WrapSession is set.
	_, _ = src.DecryptTicket(nil, tls.ConnectionState{})
	c := src.Clone()
	c.NextProtos = []string{qhttp3.NextProtoH3}
	c.MinVersion = tls.VersionTLS13
	if c.MaxVersion != 0 && c.MaxVersion < tls.VersionTLS13 {
		c.MaxVersion = tls.VersionTLS13
	}
	unwrap := c.UnwrapSession
	if unwrap == nil {
		unwrap = c.DecryptTicket
	}
	allow, refused := h.allow0RTT, h.refused
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := unwrap(identity, cs)
		if ss != nil && ss.EarlyData && (allow == nil || !allow(cs.ServerName)) {
			ss.EarlyData = false
			if refused != nil {
				refused()
			}
		}
		return ss, err
	}
	return c
}

func (h *h3Configs) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}
