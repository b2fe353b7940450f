package server

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/dataplane/sni"
	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
)

// Connection preparation: everything between accept and the first HTTP
// byte, on the connection's own goroutine and within ReadHeaderTimeout.

// prepareConn reads the PROXY header and, on the TLS listener, offers the
// connection to PreTLS, routes ticketless TLS 1.2 ClientHellos to the
// session-ID path (tls12route.go) and otherwise does the crypto/tls
// handshake. It returns the connection to serve (the raw or PROXY-wrapped
// connection, a *tls.Conn or a *tls12.Conn), or false when the connection
// was refused (and closed) or PreTLS took it. Completed handshakes were
// counted by the session layer (tlsconfig.Sessions).
func (s *Server) prepareConn(tc *trackedConn, kind string) (net.Conn, bool) {
	log := s.cfg.Log
	var c net.Conn = tc
	deadline := time.Now().Add(s.cfg.ReadHeaderTimeout)
	if s.proxyPP {
		pc, err := s.readProxyHeader(tc, deadline)
		if err != nil {
			s.m.rejected.WithLabelValues(kind, "proxy_protocol").Inc()
			if l := log.V(1); l.Enabled() {
				l.Info("connection refused", "listener", kind, "reason", err.Error())
			}
			_ = tc.Close()
			return nil, false
		}
		c = pc
	}
	if s.cfg.Deny.Refuse(addrPort(c.RemoteAddr()).Addr(), deny.StageConnection) {
		s.m.rejected.WithLabelValues(kind, "deny").Inc()
		if l := log.V(1); l.Enabled() {
			l.Info("connection refused", "listener", kind, "reason", "deny list", "client", c.RemoteAddr().String())
		}
		_ = tc.Close()
		return nil, false
	}
	if kind != listenerHTTPS {
		return c, true
	}
	set := s.tls.Load().For(frontendAddrOf(tc.frontend))
	if s.cfg.PreTLS != nil {
		_ = c.SetReadDeadline(deadline)
		c2, took := s.cfg.PreTLS(c, set.Table())
		if took {
			tc.handedOff.Store(true)
			return nil, false
		}
		c = c2
	}
	if tc.frontend != nil {
		next, ok := s.frontendServes(c, set, kind)
		if !ok {
			_ = tc.Close()
			return nil, false
		}
		c = next
	}
	if set.HasTLS12() {
		_ = c.SetReadDeadline(deadline)
		next, t12, failed := s.routeHello(c, set)
		switch {
		case failed:
			return nil, false
		case t12 != nil:
			return t12, true
		}
		c = next
	}
	base := s.base
	if tc.frontend != nil {
		base = tc.frontend.base
	}
	tlsConn := tls.Server(c, base)
	_ = tlsConn.SetDeadline(deadline)
	if err := tlsConn.HandshakeContext(s.ctx); err != nil {
		s.m.handshakeErrors.Inc()
		if l := log.V(1); l.Enabled() {
			l.Info("TLS handshake failed", "client", c.RemoteAddr().String(), "err", err.Error())
		}
		_ = tlsConn.Close()
		return nil, false
	}
	return tlsConn, true
}

// frontendServes peeks at the ClientHello of a connection on a Gateway
// frontend and reports whether the frontend has a certificate for its
// server name. A name the Gateway does not serve gets its connection
// closed without a TLS alert, as a Gateway API implementation refuses it
// (the suite's TLSRouteHostnameIntersection expects the close, not an
// alert); counted as connections_rejected_total{reason="no_certificate"}.
// Bytes that are no ClientHello go on to crypto/tls, which answers them.
// It returns the connection that replays what was peeked.
func (s *Server) frontendServes(c net.Conn, set *tlsconfig.Set, kind string) (net.Conn, bool) {
	ch, wrapped, err := sni.PeekClientHello(c, 0) // within the preparation deadline
	if err != nil {
		return wrapped, true
	}
	if set != nil { // nil: no table yet, nothing is served
		if _, cfg := set.Host(ch.ServerName); cfg != nil {
			return wrapped, true
		}
	}
	s.m.rejected.WithLabelValues(kind, "no_certificate").Inc()
	if l := s.cfg.Log.V(1); l.Enabled() {
		l.Info("connection refused", "listener", kind, "reason", "no certificate on this Gateway address", "serverName", ch.ServerName)
	}
	return nil, false
}
