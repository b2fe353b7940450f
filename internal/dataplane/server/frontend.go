package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
)

// Gateway frontends: the listeners of the Gateways served on addresses of
// their own (routing.Table.Frontends). Each frontend address gets a TLS
// and a plain HTTP listener on the frontend ports (Config.FrontendHTTPSPort,
// FrontendHTTPPort) when the replica's own listener of that kind is
// enabled. Connections accepted there carry the address: their handshakes
// use the frontend's tlsconfig.Set (Set.For), PreTLS gets its table, and
// their requests carry it (exchange.Request.Frontend) so the handler
// routes by the frontend's table.

// frontend is the running listeners of one frontend address.
type frontend struct {
	addr      netip.Addr
	base      *tls.Config // GetConfigForClient: this frontend's Set
	listeners []kindListener
	addrs     map[string]net.Addr // by listener kind
}

// kindListener is a bound listener and its kind (listenerHTTPS, listenerHTTP).
type kindListener struct {
	kind string
	ln   net.Listener
}

// newFrontendBase is the base TLS configuration of frontend a's listener:
// each handshake picks among the frontend's hosts only.
func (s *Server) newFrontendBase(a netip.Addr) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: tlsconfig.NextProtos,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			set := s.tls.Load()
			if set == nil {
				return nil, fmt.Errorf("%w %q: no routing table yet", tlsconfig.ErrNoCertificate, hello.ServerName)
			}
			return set.For(a).ConfigFor(hello)
		},
	}
}

// SetFrontends makes the running frontend listeners those of addrs: it
// binds the listeners of addresses not served yet and closes those of
// addresses no longer listed. Closing a frontend stops its accepts and
// closes its connections still in preparation (PROXY header, handshake);
// requests in flight finish, and later requests on its keep-alive
// connections are routed by what the table now holds for the address
// (nothing, once its Gateway is gone: 404, as for any unserved name).
//
// Before Start, SetFrontends only records addrs; Start binds them. An
// address that cannot be bound is left out (its error is in the returned
// error, the other addresses are still applied) and is tried again by the
// next call that lists it. It fails after Shutdown. Call Apply with the
// Set of the same table first, so that a new frontend's first connection
// finds its configuration.
func (s *Server) SetFrontends(ctx context.Context, addrs []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("server: SetFrontends after Shutdown")
	}
	s.wantFrontends = slices.Clone(addrs)
	if !s.started {
		return nil
	}
	return s.syncFrontendsLocked(ctx)
}

// syncFrontendsLocked binds and closes frontends to match wantFrontends.
func (s *Server) syncFrontendsLocked(ctx context.Context) error {
	want := make(map[netip.Addr]bool, len(s.wantFrontends))
	for _, a := range s.wantFrontends {
		if a.IsValid() {
			want[a] = true
		}
	}
	for a, fe := range s.frontends {
		if !want[a] {
			s.closeFrontendLocked(fe)
			delete(s.frontends, a)
		}
	}
	var errs []error
	for a := range want {
		if s.frontends[a] != nil {
			continue
		}
		fe, err := s.bindFrontend(ctx, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.frontends[a] = fe
		for _, kl := range fe.listeners {
			s.wg.Add(1)
			go s.acceptLoop(kl.ln, kl.kind, fe)
		}
	}
	return errors.Join(errs...)
}

// bindFrontend binds the listeners of frontend a, or none.
func (s *Server) bindFrontend(ctx context.Context, a netip.Addr) (*frontend, error) {
	fe := &frontend{addr: a, base: s.newFrontendBase(a), addrs: map[string]net.Addr{}}
	lc := listenConfig()
	for _, want := range []struct {
		kind string
		on   bool
		port int
	}{
		{listenerHTTPS, s.cfg.HTTPSAddr != "", s.cfg.FrontendHTTPSPort},
		{listenerHTTP, s.cfg.HTTPAddr != "", s.cfg.FrontendHTTPPort},
	} {
		if !want.on {
			continue
		}
		addr := net.JoinHostPort(a.String(), strconv.Itoa(want.port))
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, kl := range fe.listeners {
				_ = kl.ln.Close()
			}
			return nil, fmt.Errorf("server: listen frontend %s %s: %w", want.kind, addr, err)
		}
		fe.listeners = append(fe.listeners, kindListener{want.kind, ln})
		fe.addrs[want.kind] = ln.Addr()
	}
	return fe, nil
}

// closeFrontendLocked stops fe's accepts and closes its connections still
// in preparation.
func (s *Server) closeFrontendLocked(fe *frontend) {
	for _, kl := range fe.listeners {
		_ = kl.ln.Close()
	}
	for tc := range s.conns {
		if tc.frontend == fe && !tc.handedOff.Load() {
			_ = tc.Conn.Close() // its goroutine untracks it
		}
	}
}

// FrontendHTTPSAddr returns the bound TLS listener address of frontend a,
// or nil when a is not served (or the TLS listener is disabled).
func (s *Server) FrontendHTTPSAddr(a netip.Addr) net.Addr { return s.frontendAddr(a, listenerHTTPS) }

// FrontendHTTPAddr returns the bound plain HTTP listener address of
// frontend a, or nil.
func (s *Server) FrontendHTTPAddr(a netip.Addr) net.Addr { return s.frontendAddr(a, listenerHTTP) }

func (s *Server) frontendAddr(a netip.Addr, kind string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fe := s.frontends[a]; fe != nil {
		return fe.addrs[kind]
	}
	return nil
}

// frontendAddrOf is the frontend address of a connection's listener, the
// zero Addr for the replica's own.
func frontendAddrOf(fe *frontend) netip.Addr {
	if fe == nil {
		return netip.Addr{}
	}
	return fe.addr
}
