package tlsconfig

import (
	"crypto/tls"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/tls12"
)

// SessionIDs installs session-ID resumption on the TLS 1.2 session-ID
// path's configuration of a host (internal/tls12, for clients that resume
// by session ID only) and counts its handshakes; sessionmesh.Node
// implements it. ConfigureTLS12 returns false when the host's sessions do
// not resume (Off): the host's clients then stay on crypto/tls. The same
// rules as Sessions.ConfigureTLS apply.
//
// When the Sessions given to Build also implement SessionIDs, hosts whose
// policy allows TLS 1.2 get a session-ID path configuration, whatever their
// session mode (a TicketKeys host cannot hand a ticketless client a
// ticket); otherwise every client stays on crypto/tls.
type SessionIDs interface {
	ConfigureTLS12(cfg *tls12.Config, host sessionmesh.Host) bool
}

// buildTLS12 makes the session-ID path's configuration of h, or nil when
// the host is not served there: TLS 1.2 not allowed, sessions that do not
// resume, or a key the path cannot sign with.
func buildTLS12(h *routing.TLSHost, cert *tls.Certificate, p *routing.TLSPolicy, sids SessionIDs) *tls12.Config {
	if (p.MinVersion != 0 && p.MinVersion > tls.VersionTLS12) || (p.MaxVersion != 0 && p.MaxVersion < tls.VersionTLS12) {
		return nil
	}
	curves := p.CurvePreferences
	if curves == nil {
		curves = routing.DefaultCurves
	}
	cfg := &tls12.Config{
		Certificate:  cert,
		CipherSuites: p.CipherSuites,
		Groups:       curves,
		NextProtos:   NextProtos,
		ServesTLS13:  p.MaxVersion == 0 || p.MaxVersion >= tls.VersionTLS13,
	}
	if !cfg.Usable() || !sids.ConfigureTLS12(cfg, SessionHost(h.Certificate, p)) {
		return nil
	}
	return cfg
}

// HasTLS12 reports whether some host of the Set has a session-ID path
// configuration (false for a nil Set), so that the listener only peeks at
// ClientHellos when one may be routed there.
func (s *Set) HasTLS12() bool { return s != nil && len(s.tls12) > 0 }

// TLS12 returns the session-ID path's configuration of host h, or nil.
func (s *Set) TLS12(h *routing.TLSHost) *tls12.Config {
	if s == nil {
		return nil
	}
	return s.tls12[h]
}
