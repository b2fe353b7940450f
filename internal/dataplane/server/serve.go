package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/h2"
	"github.com/meshgate/meshgate/internal/dataplane/http1"
	"github.com/meshgate/meshgate/internal/tls12"
)

// Serving: a prepared connection is served on the goroutine that prepared
// it, HTTP/1.1 on the http1 engine, HTTP/2 on the h2 engine.

// serveConn prepares the connection (prepare.go), then serves HTTP on it
// until it ends.
func (s *Server) serveConn(tc *trackedConn, kind string) {
	defer s.wg.Done()
	c, ok := s.prepareConn(tc, kind)
	if !ok {
		return
	}
	s.serve(tc, c)
}

// tlsState is what crypto/tls and internal/tls12 connections both tell.
type tlsState interface {
	ConnectionState() tls.ConnectionState
}

// serve serves HTTP on a prepared connection: HTTP/2 when ALPN chose it,
// else HTTP/1.1.
func (s *Server) serve(tc *trackedConn, c net.Conn) {
	if !s.handOff(tc) {
		_ = c.Close()
		return
	}
	info := http1.ConnInfo{RemoteAddr: addrPort(c.RemoteAddr())}
	if ts, ok := c.(tlsState); ok {
		info.TLS = true
		if _, t12 := c.(*tls12.Conn); t12 {
			_ = c.SetDeadline(time.Time{})
		}
		cs := ts.ConnectionState()
		info.ServerName = cs.ServerName
		if cs.NegotiatedProtocol == "h2" {
			// The h2 engine sets its own deadlines. Shutdown drains its
			// streams (GOAWAY); it does not cancel them.
			_ = c.SetDeadline(time.Time{})
			s.h2.ServeConn(c, h2.ConnInfo{RemoteAddr: info.RemoteAddr, TLS: true, ServerName: info.ServerName})
			_ = tc.Close()
			return
		}
	}
	// The h1 engine sets its own deadline per read.
	s.h1.ServeConn(c, info)
}

// handOff marks tc as serving requests (Shutdown drains it instead of
// closing it), or reports false when Shutdown began in the meantime.
func (s *Server) handOff(tc *trackedConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	tc.handedOff.Store(true)
	return true
}

// addrPort converts a TCP address; other kinds give the zero value.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// newHTTPServers builds the HTTP/1.1 and HTTP/2 engines, both
// served per connection (ServeConn) from the connection's goroutine.
func (s *Server) newHTTPServers() error {
	var err error
	s.h1, err = http1.NewServer(http1.ServerConfig{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		Log:               s.cfg.Log.WithValues("proto", "http/1.1"),
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.h2, err = h2.NewServer(h2.Config{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		CountError:        s.m.countH2Error,
		Log:               s.cfg.Log.WithValues("proto", "h2"),
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}
