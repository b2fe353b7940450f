package server

import (
	"net"

	"github.com/meshgate/meshgate/internal/dataplane/sni"
	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
	"github.com/meshgate/meshgate/internal/tls12"
)

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
func (s *Server) routeHello(c net.Conn, set *tlsconfig.Set) (next net.Conn, t12 *tls12.Conn, failed bool) {
	ch, wrapped, err := sni.PeekClientHello(c, 0)
	t := set.Table()
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
	cfg := set.TLS12(host)
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
