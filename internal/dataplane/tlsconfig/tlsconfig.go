// Package tlsconfig builds the tls.Config of every TLS host of a routing
// table, once, when the table is published: certificate (Leaf parsed),
// versions, ciphers, curves, ALPN, and session resumption installed by the
// session layer. Handshakes then only look their host's configuration up in
// an immutable Set read through one atomic pointer (Holder).
//
// The TCP listener (dataplane/server) serves a Set as built; HTTP/3 serves a
// Set derived from it (Derive) with its own ALPN and 0-RTT policy.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/tls12"
)

// ErrNoCertificate fails handshakes whose SNI matches no TLS host with a
// certificate, while the table has no default certificate either.
var ErrNoCertificate = errors.New("tlsconfig: no certificate for server name")

// NextProtos is the ALPN list of the TCP listener's configurations.
var NextProtos = []string{"h2", "http/1.1"}

// Sessions installs session resumption on a per-host configuration and
// counts its handshakes; sessionmesh.Node implements it. It gets the host in
// the session layer's own terms (see sessionmesh.Host): the data plane
// translates, the session layer knows nothing of routing.
//
// ConfigureTLS is called once per host when a table is published, never per
// handshake, from the goroutine that builds the Set. cfg is fresh and not yet
// in use: the implementation may set session fields and chain
// VerifyConnection, and must not modify cfg afterwards (a tls.Config must not
// change once in use).
type Sessions interface {
	ConfigureTLS(cfg *tls.Config, host sessionmesh.Host)
}

// HandshakeScoper, when Sessions implements it, gives each handshake the
// configuration it should use (sessionmesh.Node.ScopeHandshake: a clone
// whose session hooks bound the remote lookups of this handshake and of its
// client address). cfg is one the Set built; the result serves that
// handshake only.
type HandshakeScoper interface {
	ScopeHandshake(cfg *tls.Config, hello *tls.ClientHelloInfo) *tls.Config
}

// Set is the per-host configurations of one table. It is immutable and safe
// for concurrent use.
type Set struct {
	table *routing.Table
	hosts map[*routing.TLSHost]*tls.Config
	tls12 map[*routing.TLSHost]*tls12.Config // session-ID path (tls12.go)
	scope HandshakeScoper                    // nil: configurations as built
	// frontends are the Sets of the table's Gateway frontends
	// (routing.Table.Frontends), by address and port; see For.
	frontends map[netip.AddrPort]*Set
}

// emptySet serves nothing: For's answer for an address without a frontend.
var emptySet = &Set{table: &routing.Table{}}

// Build builds the configuration of every TLS host of t that has a
// certificate (a host listed under several names is built once), and of
// its session-ID path when sessions implements SessionIDs; likewise for
// each of t's frontends, in a Set of its own (see For), so a Gateway on an
// address of its own presents its certificates and policies only. Every
// frontend's hosts get the session layer like t's own. sessions is
// required. t may be nil (an empty Set that fails every handshake).
func Build(t *routing.Table, sessions Sessions) *Set {
	s := build1(t, sessions)
	if t == nil || len(t.Frontends) == 0 {
		return s
	}
	s.frontends = make(map[netip.AddrPort]*Set, len(t.Frontends))
	for a, ft := range t.Frontends {
		s.frontends[a] = build1(ft, sessions)
	}
	return s
}

// For returns the Set of the connections accepted on frontend address
// and port a: s itself for the zero AddrPort (the replica's own
// listeners), the frontend's Set, or one that serves nothing (every
// handshake fails, its Table is empty) for an address s's table has no
// frontend for, e.g. one whose Gateway was just removed. It does not
// allocate.
func (s *Set) For(a netip.AddrPort) *Set {
	if !a.IsValid() || s == nil {
		return s
	}
	if f := s.frontends[a]; f != nil {
		return f
	}
	return emptySet
}

// build1 builds the Set of one table, without frontends.
func build1(t *routing.Table, sessions Sessions) *Set {
	s := &Set{table: t, hosts: make(map[*routing.TLSHost]*tls.Config), tls12: make(map[*routing.TLSHost]*tls12.Config)}
	if t == nil {
		return s
	}
	sids, _ := sessions.(SessionIDs)
	s.scope, _ = sessions.(HandshakeScoper)
	add := func(h *routing.TLSHost) {
		if h == nil || h.Certificate == nil || len(h.Certificate.Certificate) == 0 || s.hosts[h] != nil {
			return
		}
		cfg := build(h, sessions)
		s.hosts[h] = cfg
		if sids != nil {
			if c := buildTLS12(h, &cfg.Certificates[0], policyOf(h), sids); c != nil {
				s.tls12[h] = c
			}
		}
	}
	for _, h := range t.TLS.Exact {
		add(h)
	}
	for _, h := range t.TLS.Wildcards {
		add(h)
	}
	add(t.TLS.Default)
	return s
}

func policyOf(h *routing.TLSHost) *routing.TLSPolicy {
	if h.Policy == nil {
		return routing.DefaultPolicy()
	}
	return h.Policy
}

// build makes the configuration of one host.
func build(h *routing.TLSHost, sessions Sessions) *tls.Config {
	p := policyOf(h)
	cert := *h.Certificate // the table's copy is read-only
	if cert.Leaf == nil {
		// crypto/tls would otherwise parse the leaf on every handshake.
		if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
			cert.Leaf = leaf
		}
	}
	cfg := &tls.Config{
		Certificates:     []tls.Certificate{cert},
		MinVersion:       p.MinVersion,
		MaxVersion:       p.MaxVersion,
		CipherSuites:     p.CipherSuites,
		CurvePreferences: p.CurvePreferences,
		NextProtos:       NextProtos,
	}
	if h.Stream {
		cfg.NextProtos = nil // a TLSRoute's stream, not HTTP
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.CurvePreferences == nil {
		cfg.CurvePreferences = routing.DefaultCurves
	}
	sessions.ConfigureTLS(cfg, SessionHost(h.Certificate, p))
	return cfg
}

// SessionHost translates a host's certificate and policy into the session
// layer's terms.
func SessionHost(cert *tls.Certificate, p *routing.TLSPolicy) sessionmesh.Host {
	sh := sessionmesh.Host{
		Lifetime:          p.SessionLifetime,
		TicketKeyRotation: p.TicketKeyRotation,
		Policy:            p.Name,
		PolicyDigest:      p.TLSDigest(),
	}
	switch p.SessionMode {
	case routing.SessionTicketKeys:
		sh.Mode = sessionmesh.TicketKeys
	case routing.SessionOff:
		sh.Mode = sessionmesh.Off
	default:
		sh.Mode = sessionmesh.Stateful
	}
	if cert != nil && len(cert.Certificate) > 0 {
		sh.Leaf = cert.Certificate[0]
	}
	return sh
}

// Derive returns a Set of the same table whose configurations are clones of
// s's, each changed by fn before use (HTTP/3 sets its ALPN and 0-RTT policy).
// fn runs once per host, now. Frontends are not derived: the result serves
// the replica's own addresses only (HTTP/3 listens there only).
func (s *Set) Derive(fn func(h *routing.TLSHost, cfg *tls.Config)) *Set {
	d := &Set{table: s.table, hosts: make(map[*routing.TLSHost]*tls.Config, len(s.hosts)), tls12: s.tls12, scope: s.scope}
	for h, c := range s.hosts {
		c = c.Clone()
		fn(h, c)
		d.hosts[h] = c
	}
	return d
}

// Table returns the table the Set was built from (nil for an empty or nil
// Set).
func (s *Set) Table() *routing.Table {
	if s == nil {
		return nil
	}
	return s.table
}

// Len returns the number of configured hosts.
func (s *Set) Len() int { return len(s.hosts) }

// Host returns the TLS host serverName selects and its configuration, nil
// when none (or the host has no certificate).
func (s *Set) Host(serverName string) (*routing.TLSHost, *tls.Config) {
	if s.table == nil {
		return nil, nil
	}
	h := s.table.TLS.Lookup(serverName)
	if h == nil {
		return nil, nil
	}
	return h, s.hosts[h]
}

// Config returns the configuration for serverName, or an error wrapping
// ErrNoCertificate. It does not allocate on success.
func (s *Set) Config(serverName string) (*tls.Config, error) {
	if s.table == nil {
		return nil, fmt.Errorf("%w %q: no routing table yet", ErrNoCertificate, serverName)
	}
	h, cfg := s.Host(serverName)
	if cfg == nil {
		if h == nil {
			return nil, fmt.Errorf("%w %q", ErrNoCertificate, serverName)
		}
		return nil, fmt.Errorf("%w %q: host has no certificate", ErrNoCertificate, serverName)
	}
	return cfg, nil
}

// ConfigFor returns the configuration of one handshake: Config of its
// server name, scoped to the handshake by the session layer (see
// HandshakeScoper) when it offers one.
func (s *Set) ConfigFor(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	cfg, err := s.Config(hello.ServerName)
	if err != nil || s.scope == nil {
		return cfg, err
	}
	return s.scope.ScopeHandshake(cfg, hello), nil
}

// Holder publishes the current Set to handshakes. The zero value holds none
// (every handshake fails). Safe for concurrent use.
type Holder struct{ p atomic.Pointer[Set] }

// Load returns the current Set, or nil before the first Store.
func (h *Holder) Load() *Set { return h.p.Load() }

// Store publishes s.
func (h *Holder) Store(s *Set) { h.p.Store(s) }

// GetConfigForClient selects the configuration of the current Set; it is
// meant as tls.Config.GetConfigForClient of a listener's base configuration.
func (h *Holder) GetConfigForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	s := h.p.Load()
	if s == nil {
		return nil, fmt.Errorf("%w %q: no routing table yet", ErrNoCertificate, hello.ServerName)
	}
	return s.ConfigFor(hello)
}
