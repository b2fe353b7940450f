package server

import (
	"crypto/tls"
	"errors"
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
	info := http1.ConnInfo{RemoteAddr: addrPort(c.RemoteAddr()), Frontend: frontendAddrOf(tc.frontend)}
	if ts, ok := c.(tlsState); ok {
		info.TLS = true
		info.Hold = tc
		if _, t12 := c.(*tls12.Conn); t12 {
			_ = c.SetDeadline(time.Time{})
		}
		cs := ts.ConnectionState()
		info.ServerName = cs.ServerName
		if s.postTLS(tc, c, cs.ServerName) {
			return
		}
		if cs.NegotiatedProtocol == "h2" {
			// The h2 engine sets its own deadlines. Shutdown drains its
			// streams (GOAWAY); it does not cancel them.
			_ = c.SetDeadline(time.Time{})
			s.h2.ServeConn(c, h2.ConnInfo{RemoteAddr: info.RemoteAddr, TLS: true, ServerName: info.ServerName, Frontend: info.Frontend})
			_ = tc.Close()
			return
		}
	}
	if !info.TLS {
		// HTTP/2 with prior knowledge (RFC 9113 §3.3): gRPC clients
		// without TLS start with the preface instead of a request line.
		rc, h2c, err := s.sniffPreface(c)
		if err != nil {
			_ = tc.Close()
			return
		}
		c = rc
		if h2c {
			_ = c.SetDeadline(time.Time{})
			s.h2.ServeConn(c, h2.ConnInfo{RemoteAddr: info.RemoteAddr, Frontend: info.Frontend})
			_ = tc.Close()
			return
		}
	}
	// The h1 engine sets its own deadline per read.
	s.h1.ServeConn(c, info)
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// sniffPreface reads from the plain connection c only while its bytes agree
// with the HTTP/2 preface (never past it, so an HTTP/1.1 request shorter
// than the preface is not waited for), bounded by ReadHeaderTimeout. It
// returns a connection that replays what was read, and whether the whole
// preface arrived.
func (s *Server) sniffPreface(c net.Conn) (net.Conn, bool, error) {
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
	buf := make([]byte, len(h2Preface))
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if string(buf[:n]) != h2Preface[:n] {
			break
		}
		if err != nil {
			if n == 0 {
				return nil, false, err
			}
			break
		}
	}
	return &prefaceConn{Conn: c, pending: buf[:n]}, n == len(h2Preface) && string(buf) == h2Preface, nil
}

// prefaceConn replays bytes read ahead before reading c again.
type prefaceConn struct {
	net.Conn
	pending []byte
}

// Read implements net.Conn.
func (c *prefaceConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the underlying connection when it can.
func (c *prefaceConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("server: connection cannot half-close")
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

// postTLS offers a terminated TLS connection to Config.PostTLS and
// reports whether it took (and closed) it.
func (s *Server) postTLS(tc *trackedConn, c net.Conn, serverName string) bool {
	if s.cfg.PostTLS == nil {
		return false
	}
	set := s.tls.Load().For(frontendAddrOf(tc.frontend))
	if set == nil || set.Table() == nil {
		return false
	}
	_ = c.SetDeadline(time.Time{})
	if !s.cfg.PostTLS(c, set.Table(), serverName) {
		return false
	}
	_ = tc.Close()
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
