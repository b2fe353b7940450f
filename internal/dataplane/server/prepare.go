package server

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
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
