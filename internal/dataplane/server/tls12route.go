package server

import (
	"crypto/tls"
	"net"

	"github.com/meshgate/meshgate/internal/dataplane/sni"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/tls12"
)

// SessionIDCaches installs session-ID resumption on the TLS 1.2 session-ID
// path's configuration of a host (internal/tls12, for clients that resume
// by session ID only) and counts its handshakes; sessionmesh.Node
// implements it. ConfigureTLS12 returns false when the host's sessions do
// not resume (Off): the host's clients then stay on crypto/tls. It is
// called once per host and table generation, like SessionConfigurer, for
// hosts whose policy allows TLS 1.2, whatever their session mode (a
// TicketKeys host cannot hand a ticketless client a ticket).
type SessionIDCaches interface {
	ConfigureTLS12(cfg *tls12.Config, host sessionmesh.Host) bool
}

// buildTLS12 makes the session-ID path's config for h, or nil when the
// host is not served there: no cache provider, TLS 1.2 not allowed,
// resumption off, or a key the path cannot sign with.
func (tc *tlsConfigs) buildTLS12(h *routing.TLSHost) *tls12.Config {
	p := h.Policy
	if p == nil {
		p = routing.DefaultPolicy()
	}
	if tc.sessionIDs == nil ||
		(p.MinVersion != 0 && p.MinVersion > tls.VersionTLS12) || (p.MaxVersion != 0 && p.MaxVersion < tls.VersionTLS12) {
		return nil
	}
	curves := p.CurvePreferences
	if curves == nil {
		curves = routing.DefaultCurves
	}
	cfg := &tls12.Config{
		Certificate:  h.Certificate,
		CipherSuites: p.CipherSuites,
		Groups:       curves,
		NextProtos:   []string{"h2", "http/1.1"},
		ServesTLS13:  p.MaxVersion == 0 || p.MaxVersion >= tls.VersionTLS13,
	}
	if !cfg.Usable() || !tc.sessionIDs.ConfigureTLS12(cfg, sessionHost(h, p)) {
		return nil
	}
	return cfg
}

// Client hello kinds (label values of meshgate_tls_client_hellos_total).
const (
	helloTLS13 = iota
	helloTLS12Ticket
	helloTLS12Ticketless
	helloOther
	numHelloKinds
)

var helloKindNames = [numHelloKinds]string{"tls13", "tls12_ticket", "tls12_ticketless", "other"}

// routeHello peeks at the ClientHello on c. A ticketless TLS 1.2 hello
// (no session_ticket extension, no TLS 1.3 offer) that its host's
// session-ID path can serve gets that path: routeHello runs its handshake
// and returns the TLS connection as t12, or failed after a failed
// handshake (the connection is then closed). Everything else returns next,
// which replays the hello, for crypto/tls. c's read deadline bounds the peek.
func (s *Server) routeHello(c net.Conn, t *routing.Table) (next net.Conn, t12 *tls12.Conn, failed bool) {
	ch, wrapped, err := sni.PeekClientHello(c, 0)
	if err != nil || t == nil {
		s.m.hellos[helloOther].Inc()
		return wrapped, nil, false
	}
	h, err := tls12.ParseClientHello(ch.Raw)
	switch {
	case err != nil:
		s.m.hellos[helloOther].Inc()
		return wrapped, nil, false
	case h.OffersTLS13():
		s.m.hellos[helloTLS13].Inc()
		return wrapped, nil, false
	case !h.Ticketless12():
		s.m.hellos[helloTLS12Ticket].Inc()
		return wrapped, nil, false
	}
	s.m.hellos[helloTLS12Ticketless].Inc()
	host := t.TLS.Lookup(h.ServerName)
	if host == nil || host.Certificate == nil {
		return wrapped, nil, false
	}
	cfg := s.tlsc.tls12For(t, host)
	if cfg == nil || !cfg.CanServe(h) {
		return wrapped, nil, false
	}
	tc := tls12.ServerWithHello(wrapped, cfg, h)
	if err := tc.HandshakeContext(s.ctx); err != nil {
		s.m.handshakeErrors.Inc()
		if l := s.cfg.Log.V(1); l.Enabled() {
			l.Info("TLS 1.2 session-ID handshake failed", "client", c.RemoteAddr().String(), "err", err.Error())
		}
		_ = tc.Close()
		return nil, nil, true
	}
	// The session layer's VerifyConnection counted the handshake.
	return nil, tc, false
}
