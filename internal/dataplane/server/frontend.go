package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
	"github.com/meshgate/meshgate/internal/routing"
)

// Gateway frontends: the listeners of the Gateways served on addresses of
// their own (routing.Table.Frontends). Each frontend is one address and
// port, with the server its Gateway listeners there need: TLS (HTTPS
// termination and TLS passthrough) or plain HTTP, bound when the replica's
// own listener of that kind is enabled. Connections accepted there carry
// the address and port: their handshakes use the frontend's tlsconfig.Set
// (Set.For), PreTLS gets its table, and their requests carry it
// (exchange.Request.Frontend) so the handler routes by the frontend's
// table.

// Frontend is one Gateway frontend listener to run.
type Frontend struct {
	// Addr is the address and port to bind (a port, not 0: clients dial
	// the Gateway listener's port).
	Addr netip.AddrPort
	// Kind is the server it runs: routing.FrontendTLS or FrontendHTTP.
	Kind routing.FrontendKind
}

// FrontendsOf lists the frontends of t, sorted by address and port.
func FrontendsOf(t *routing.Table) []Frontend {
	if t == nil {
		return nil
	}
	out := make([]Frontend, 0, len(t.Frontends))
	for a, ft := range t.Frontends {
		out = append(out, Frontend{Addr: a, Kind: ft.Kind})
	}
	slices.SortFunc(out, func(a, b Frontend) int { return a.Addr.Compare(b.Addr) })
	return out
}

// frontend is the running listener of one frontend address and port.
type frontend struct {
	key  netip.AddrPort
	kind string      // listenerHTTPS or listenerHTTP
	base *tls.Config // TLS: GetConfigForClient picks from this frontend's Set
	ln   net.Listener
}

// newFrontendBase is the base TLS configuration of frontend a's listener:
// each handshake picks among the frontend's hosts only.
func (s *Server) newFrontendBase(a netip.AddrPort) *tls.Config {
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

// SetFrontends makes the running frontend listeners those of fes: it
// binds the listeners not running yet, closes those no longer listed, and
// rebinds one whose kind changed. Closing a frontend stops its accepts and
// closes its connections still in preparation (PROXY header, handshake);
// requests in flight finish, and later requests on its keep-alive
// connections are routed by what the table now holds for the address
// (nothing, once its Gateway is gone: 404, as for any unserved name).
// Entries of a kind whose replica listener is disabled (Config.HTTPSAddr,
// HTTPAddr empty), with an invalid address or port 0, are ignored.
//
// Before Start, SetFrontends only records fes; Start binds them. A
// frontend that cannot be bound is left out (its error is in the returned
// error, the others are still applied) and is tried again by the next
// call that lists it. It fails after Shutdown. Call Apply with the Set of
// the same table first, so that a new frontend's first connection finds
// its configuration.
func (s *Server) SetFrontends(ctx context.Context, fes []Frontend) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("server: SetFrontends after Shutdown")
	}
	s.wantFrontends = slices.Clone(fes)
	if !s.started {
		return nil
	}
	return s.syncFrontendsLocked(ctx)
}

// syncFrontendsLocked binds and closes frontends to match wantFrontends.
func (s *Server) syncFrontendsLocked(ctx context.Context) error {
	want := make(map[netip.AddrPort]string, len(s.wantFrontends))
	for _, f := range s.wantFrontends {
		kind, on := listenerHTTPS, s.cfg.HTTPSAddr != ""
		if f.Kind == routing.FrontendHTTP {
			kind, on = listenerHTTP, s.cfg.HTTPAddr != ""
		} else if f.Kind != routing.FrontendTLS {
			on = false
		}
		if on && f.Addr.IsValid() && f.Addr.Port() != 0 {
			want[f.Addr] = kind
		}
	}
	for a, fe := range s.frontends {
		if want[a] != fe.kind {
			s.closeFrontendLocked(fe)
			delete(s.frontends, a)
		}
	}
	var errs []error
	for _, a := range slices.SortedFunc(maps.Keys(want), netip.AddrPort.Compare) {
		if s.frontends[a] != nil {
			continue
		}
		fe, err := s.bindFrontend(ctx, a, want[a])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.frontends[a] = fe
		s.wg.Add(1)
		go s.acceptLoop(fe.ln, fe.kind, fe)
	}
	return errors.Join(errs...)
}

// bindFrontend binds the listener of frontend a.
func (s *Server) bindFrontend(ctx context.Context, a netip.AddrPort, kind string) (*frontend, error) {
	lc := listenConfig()
	ln, err := lc.Listen(ctx, "tcp", a.String())
	if err != nil {
		return nil, fmt.Errorf("server: listen frontend %s %s: %w", kind, a, err)
	}
	fe := &frontend{key: a, kind: kind, ln: ln}
	if kind == listenerHTTPS {
		fe.base = s.newFrontendBase(a)
	}
	return fe, nil
}

// closeFrontendLocked stops fe's accepts and closes its connections still
// in preparation.
func (s *Server) closeFrontendLocked(fe *frontend) {
	_ = fe.ln.Close()
	for tc := range s.conns {
		if tc.frontend == fe && !tc.handedOff.Load() {
			_ = tc.Conn.Close() // its goroutine untracks it
		}
	}
}

// FrontendAddr returns the bound listener address of frontend a, or nil
// when a is not served (not listed, not bound, or its kind disabled).
func (s *Server) FrontendAddr(a netip.AddrPort) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fe := s.frontends[a]; fe != nil {
		return fe.ln.Addr()
	}
	return nil
}

// frontendAddrOf is the frontend address of a connection's listener, the
// zero Addr for the replica's own.
func frontendAddrOf(fe *frontend) netip.AddrPort {
	if fe == nil {
		return netip.AddrPort{}
	}
	return fe.key
}
