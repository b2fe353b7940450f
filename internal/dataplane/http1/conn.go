package http1

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// Connection states, for Shutdown: only an idle connection (waiting for
// its next request, nothing read yet) is closed at once.
const (
	stateActive int32 = iota
	stateIdle
	stateClosed
)

const (
	// idleRead is the size of the read a connection blocks in between
	// requests: a small array of the connection, so that an idle
	// connection holds no pooled buffer.
	idleRead = 512
	// maxDrainBody bounds the unread request body discarded after a
	// response to keep the connection (net/http discards up to 256 KiB).
	maxDrainBody = 256 << 10
	// lingerTime bounds the wait, after answering a request whose body
	// was not read, for the client to stop sending before the connection
	// closes, so the response is not lost to a reset.
	lingerTime = 500 * time.Millisecond
)

// tlsLayer is a TLS connection (crypto/tls's, or internal/tls12's for
// session-ID clients): it half-closes with close_notify and sits on a
// transport connection of its own.
type tlsLayer interface {
	CloseWrite() error
	NetConn() net.Conn
}

// conn is one client connection, owned by ServeConn's goroutine.
type conn struct {
	srv    *Server
	nc     net.Conn
	tc     tlsLayer // nc as TLS, or nil
	hold   Holder   // ConnInfo.Hold
	state  atomic.Int32
	scheme string
	sni    string // ConnInfo.ServerName
	// frontend is ConnInfo.Frontend.
	frontend netip.AddrPort
	remote   netip.AddrPort
	ip       string

	br    Reader
	small [idleRead]byte
	wbuf  *Buf
	out   []byte // pending output, in wbuf

	head RequestHead
	req  exchange.Request
	body requestBody

	// Response state of the current exchange.
	wroteFinal bool
	finished   bool
	upgraded   bool
	noBody     bool
	chunked    bool
	closeAfter bool
	sent100    bool // a 100 (Continue) went out
	// headDeadline reports that the read deadline bounds the head being
	// read (ReadHeaderTimeout), not the idle wait before it.
	headDeadline bool
	linger       bool  // unread input may follow: close gently
	remaining    int64 // body bytes still to send, -1 without Content-Length
}

func (c *conn) init(s *Server, nc net.Conn, info ConnInfo) {
	c.srv, c.nc = s, nc
	c.tc, _ = nc.(tlsLayer)
	c.scheme = "http"
	if info.TLS {
		c.scheme = "https"
	}
	c.sni = info.ServerName
	c.frontend = info.Frontend
	c.hold = info.Hold
	c.remote = info.RemoteAddr
	if !c.remote.IsValid() {
		if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			c.remote = ta.AddrPort()
		}
	}
	c.remote = netip.AddrPortFrom(c.remote.Addr().Unmap(), c.remote.Port())
	c.ip = c.remote.Addr().String() // once per connection
	c.state.Store(stateActive)
	c.br.Reset(nc)
	c.body.c = c
}

// release drops the connection's references before it is pooled.
func (c *conn) release() {
	c.br.Release()
	c.br.Reset(nil)
	if c.wbuf != nil {
		PutBuf(c.wbuf)
		c.wbuf, c.out = nil, nil
	}
	head, req := c.head.Fields, c.req.Header
	head.Reset()
	req.Reset()
	tr := c.body.cr.trailer
	tr.Reset()
	*c = conn{head: RequestHead{Fields: head}, req: exchange.Request{Header: req}}
	c.body.cr.trailer = tr
}

// serve runs the connection's request loop.
func (c *conn) serve() {
	defer c.close()
	for first := true; ; first = false {
		if !c.awaitRequest(first) || !c.readRequest() {
			return
		}
		c.serveExchange()
		if c.closeAfter || c.srv.draining.Load() {
			return
		}
	}
}

// awaitRequest waits for the first bytes of the next request, holding no
// pooled buffer while it waits. It returns false when the connection is
// to close (idle timeout, client closed, Shutdown).
func (c *conn) awaitRequest(first bool) bool {
	s := c.srv
	c.headDeadline = first
	if len(c.br.Buffered()) > 0 { // pipelined
		return true
	}
	c.br.Release()
	wait := s.cfg.IdleTimeout
	if first {
		wait = s.cfg.ReadHeaderTimeout
	} else {
		c.state.Store(stateIdle)
		if s.draining.Load() {
			return false
		}
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(wait))
	n, err := c.nc.Read(c.small[:])
	if !first && !c.state.CompareAndSwap(stateIdle, stateActive) {
		return false // closed by Shutdown
	}
	if n == 0 {
		if err != nil && !isQuiet(err) {
			c.logf("read failed", err)
		}
		return false
	}
	c.br.Prepend(c.small[:n])
	return true
}

// closeIfIdle closes the connection if it waits for a request (Shutdown).
func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		_ = c.nc.Close()
	}
}

// readRequest reads and parses a request head and builds c.req. Refused
// requests are answered here; it then returns false.
func (c *conn) readRequest() bool {
	max := c.srv.cfg.MaxHeaderBytes
	from := 0
	for {
		b := c.br.Buffered()
		n, resume, err := HeadLength(b, from)
		if err != nil {
			c.refuse(err)
			return false
		}
		if n > 0 {
			head := string(b[:n])
			c.br.Discard(n)
			if err := ParseRequestHead(head, &c.head); err != nil {
				c.refuse(err)
				return false
			}
			c.buildRequest()
			return true
		}
		if len(b) >= max {
			c.refuse(errHeadTooLarge)
			return false
		}
		from = resume
		if !c.headDeadline {
			// The head did not come whole: ReadHeaderTimeout from now (a
			// head that arrives in one read costs no deadline update).
			_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.ReadHeaderTimeout))
			c.headDeadline = true
		}
		if err := c.br.Fill(max); err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, ErrTooLarge):
				c.refuse(errHeadTooLarge)
			case errors.As(err, &ne) && ne.Timeout():
				c.refuse(errHeadTimeout)
			case !isQuiet(err):
				c.logf("read failed", err)
			}
			return false
		}
	}
}

var (
	errHeadTooLarge = &Error{Status: 431, Reason: "request head too large"}
	errHeadTimeout  = &Error{Status: 408, Reason: "request head not received in time"}
)

// buildRequest fills c.req from the parsed head. The head's field storage
// and the request's are swapped, so neither is copied.
func (c *conn) buildRequest() {
	h, r := &c.head, &c.req
	r.Header, h.Fields = h.Fields, r.Header
	r.Proto = exchange.HTTP11
	if h.Minor == 0 {
		r.Proto = exchange.HTTP10
	}
	r.Method, r.Scheme, r.Host = h.Method, c.scheme, h.Host
	r.ServerName, r.EarlyData, r.Frontend = c.sni, false, c.frontend
	r.Target, r.Path = h.Target, h.Path
	r.Upgrade, r.TrailersOK, r.Close = h.Upgrade, h.TETrailers, h.Close
	r.RemoteAddr, r.ClientIP, r.Context = c.remote, c.ip, nil
	r.Start = time.Now()
	r.Body, r.ContentLength = nil, 0
	switch {
	case h.Chunked:
		r.ContentLength = -1
		c.body.reset(-1, true)
		r.Body = &c.body
	case h.ContentLength > 0:
		r.ContentLength = h.ContentLength
		c.body.reset(h.ContentLength, false)
		r.Body = &c.body
	default:
		c.body.reset(0, false)
	}
	r.ExpectContinue = h.Expect100 && r.Body != nil
	names := h.ConnectionNames
	conn := h.Connection
	r.Header.DelFunc(func(f exchange.Field) bool {
		return connectionField(f.Name) || (names && exchange.HasToken(conn, f.Name))
	})
}

// connectionField reports the request fields that belong to the
// connection or to framing (RFC 9110 §7.6.1), or that net/http's
// ReverseProxy drops as hop-by-hop; what they meant is in Request's typed
// fields.
func connectionField(name string) bool {
	switch len(name) {
	case 2:
		return exchange.EqualFold(name, "TE")
	case 4:
		return exchange.EqualFold(name, "Host")
	case 6:
		return exchange.EqualFold(name, "Expect")
	case 7:
		return exchange.EqualFold(name, "Upgrade")
	case 10:
		return exchange.EqualFold(name, "Connection") || exchange.EqualFold(name, "Keep-Alive")
	case 14:
		return exchange.EqualFold(name, "Content-Length")
	case 16:
		return exchange.EqualFold(name, "Proxy-Connection")
	case 17:
		return exchange.EqualFold(name, "Transfer-Encoding")
	case 18:
		return exchange.EqualFold(name, "Proxy-Authenticate")
	case 19:
		return exchange.EqualFold(name, "Proxy-Authorization")
	}
	return false
}

// serveExchange runs the handler on c.req and settles the connection's
// state afterwards.
func (c *conn) serveExchange() {
	c.wroteFinal, c.finished, c.upgraded, c.noBody, c.chunked, c.sent100 = false, false, false, false, false, false
	c.remaining = -1
	c.srv.cfg.Handler.ServeExchange(c, &c.req)
	switch {
	case c.upgraded:
		c.closeAfter = true
		return
	case !c.wroteFinal:
		c.closeAfter = true
		_ = c.WriteHeader(500, &exchange.Header{}, 0)
		_ = c.Finish(nil)
	case !c.finished:
		c.closeAfter = true // aborted: a truncated body must not look complete
	}
	if err := c.endResponse(); err != nil {
		c.closeAfter = true
		return
	}
	if c.req.Close {
		c.closeAfter = true
	}
	if !c.body.done && c.req.Body != nil {
		c.drainBody()
	}
}

// drainBody reads what is left of an unread request body so the
// connection can carry the next request, up to maxDrainBody; a client that
// was told to wait (Expect: 100-continue without a 100) has sent nothing,
// so the connection closes instead.
func (c *conn) drainBody() {
	if c.req.ExpectContinue && !c.sent100 || c.closeAfter {
		c.closeAfter, c.linger = true, true
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.ReadHeaderTimeout))
	c.body.timeout = 0
	var sink [1024]byte
	for total := 0; total < maxDrainBody; {
		n, err := c.body.Read(sink[:])
		total += n
		if err == io.EOF {
			return
		}
		if err != nil {
			break
		}
	}
	c.closeAfter, c.linger = true, true
}

// close ends the connection: flushed, and when the client may still be
// sending, write side first and input discarded for a moment, so that the
// response is read before a reset.
func (c *conn) close() {
	_ = c.flush()
	if c.linger {
		if c.tc != nil {
			_ = c.tc.CloseWrite()
		}
		if cw, ok := c.rawConn().(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			_ = c.nc.SetReadDeadline(time.Now().Add(lingerTime))
			var sink [1024]byte
			for {
				if _, err := c.rawConn().Read(sink[:]); err != nil {
					break
				}
			}
		}
	}
	c.state.Store(stateClosed)
	_ = c.nc.Close()
}

// rawConn is the connection under TLS, or nc.
func (c *conn) rawConn() net.Conn {
	if c.tc != nil {
		return c.tc.NetConn()
	}
	return c.nc
}

// refuse answers a request that cannot be served and closes.
func (c *conn) refuse(err error) {
	status, reason := 400, err.Error()
	var he *Error
	if errors.As(err, &he) {
		status, reason = he.Status, he.Reason
	}
	c.logf("request refused", err)
	c.closeAfter, c.linger = true, true
	c.req.Method = "" // not HEAD: the body goes out
	body := appendStatusText(nil, status)
	body = append(body, ": "...)
	body = append(body, reason...)
	body = append(body, '\n')
	c.wroteFinal = false
	var h exchange.Header
	h.Add("Content-Type", "text/plain; charset=utf-8")
	_ = c.WriteHeader(status, &h, int64(len(body)))
	_, _ = c.Write(body)
	_ = c.Finish(nil)
	_ = c.endResponse()
}

func (c *conn) logf(msg string, err error) {
	if l := c.srv.cfg.Log.V(1); l.Enabled() {
		l.Info(msg, "client", c.ip, "err", err.Error())
	}
}

// isQuiet reports read errors that end a connection without anything to
// log: the client closed or reset it, it timed out idle, or it was closed
// by Shutdown.
func isQuiet(err error) bool {
	var ne net.Error
	return err == io.EOF || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)
}
