package h2

import (
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/http1"
)

// Request heads: HEADERS (with CONTINUATION, merged and HPACK-decoded by
// the Framer, which also refuses invalid field names, control characters
// in values, unknown or repeated pseudo-fields and pseudo-fields after
// regular ones) become streams here.

// errMalformed marks a malformed request (RFC 9113 §8.1.1): the stream is
// reset with PROTOCOL_ERROR.
type errMalformed string

func (e errMalformed) Error() string { return "h2: malformed request: " + string(e) }

func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return protoErr("even stream identifier from a client")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.streams[id]; st != nil {
		return c.onTrailers(st, f)
	}
	if id <= c.maxSeen || c.closing {
		// A closed stream (or one beyond the GOAWAY): its block was
		// decoded to keep HPACK in step; the rest is ignored.
		return nil
	}
	c.maxSeen = id
	if f.HasPriority() && f.Priority.StreamDep == id {
		return http2.StreamError{StreamID: id, Code: errCodeProtocol}
	}
	if c.active >= c.srv.cfg.MaxConcurrentStreams {
		c.countError("refused_stream")
		c.appendRSTLocked(id, errCodeRefused)
		return c.floodLocked()
	}
	if f.Truncated {
		c.countError("header_list_too_large")
		c.respondLocked(id, 431, "request header fields too large\n", !f.StreamEnded())
		return nil
	}
	st := getStream(c, id)
	status, err := c.buildRequest(st, f)
	if err != nil {
		putStream(st)
		c.countError("stream_malformed")
		if l := c.srv.cfg.Log.V(1); l.Enabled() {
			l.Info("HTTP/2 request refused", "client", c.client, "stream", id, "reason", err.Error())
		}
		return http2.StreamError{StreamID: id, Code: errCodeProtocol, Cause: err}
	}
	if status != 0 {
		putStream(st)
		c.respondLocked(id, status, "CONNECT is not supported\n", !f.StreamEnded())
		return nil
	}
	st.remoteDone = f.StreamEnded()
	if st.remoteDone {
		st.bodyErr = io.EOF
	}
	c.streams[id] = st
	c.active++
	if c.idleDL {
		c.idleDL = false
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	st.ctx, st.cancel = context.WithCancel(c.ctx)
	st.req.Context = st.ctx
	c.wg.Add(1)
	c.srv.workers.run(st)
	return nil
}

// onTrailers takes the trailer section of a request body (RFC 9113 §8.1).
func (c *conn) onTrailers(st *stream, f *http2.MetaHeadersFrame) error {
	if st.remoteDone {
		c.resetLocked(st, errCodeClosed)
		return nil
	}
	bad := !f.StreamEnded() || f.Truncated || len(f.PseudoFields()) > 0 ||
		(st.declLen >= 0 && st.got != st.declLen)
	if !bad {
		for _, hf := range f.RegularFields() {
			if !validValue(hf.Value) || connectionSpecific(hf.Name) {
				bad = true
				break
			}
			st.trailer.Add(hf.Name, hf.Value)
		}
	}
	if bad {
		st.trailer.Reset()
		c.countError("stream_malformed")
		c.resetLocked(st, errCodeProtocol)
		return nil
	}
	c.remoteEndLocked(st)
	st.signal()
	return nil
}

// respondLocked answers a request the reader refuses itself (431, 501)
// and, when the client is still sending, stops it.
func (c *conn) respondLocked(id uint32, status int, body string, open bool) {
	var h exchange.Header
	h.Add("content-type", "text/plain; charset=utf-8")
	h.Add("server", "meshgate")
	c.appendHeadersLocked(id, status, &h, int64(len(body)), true, false)
	c.appendDataLocked(id, []byte(body), true)
	if open {
		c.appendRSTLocked(id, errCodeNo)
	}
}

// connectionSpecific reports the fields HTTP/2 forbids (RFC 9113
// §8.2.2); te is checked apart.
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// validValue reports whether a field value may be taken as is: the
// Framer refused NUL, CR and LF already; RFC 9113 §8.2.1 also forbids
// leading and trailing whitespace.
func validValue(v string) bool {
	if v == "" {
		return true
	}
	first, last := v[0], v[len(v)-1]
	return first != ' ' && first != '\t' && last != ' ' && last != '\t'
}

// buildRequest fills st.req from a request head. It returns a status to
// answer instead of serving (501 for CONNECT) or why the request is
// malformed.
func (c *conn) buildRequest(st *stream, f *http2.MetaHeadersFrame) (int, error) {
	var method, scheme, path, authority string
	var protocol bool
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":path":
			path = hf.Value
		case ":authority":
			authority = hf.Value
		case ":protocol":
			protocol = true
		default:
			return 0, errMalformed("pseudo-header " + hf.Name + " in a request")
		}
	}
	if protocol {
		// RFC 8441: only after SETTINGS_ENABLE_CONNECT_PROTOCOL, which
		// is not offered.
		return 0, errMalformed(":protocol without extended CONNECT")
	}
	if method == "CONNECT" {
		return 501, nil
	}
	if method == "" || scheme == "" || path == "" {
		return 0, errMalformed("missing :method, :scheme or :path")
	}
	if !validToken(method) {
		return 0, errMalformed("invalid :method")
	}
	if path[0] != '/' && (path != "*" || method != "OPTIONS") {
		return 0, errMalformed("invalid :path")
	}
	if !validTarget(path) {
		return 0, errMalformed("invalid characters in :path")
	}
	q := &st.req
	var host, cookie string
	cookies, hosts := 0, 0
	for _, hf := range f.RegularFields() {
		name, v := hf.Name, hf.Value
		if !validValue(v) {
			return 0, errMalformed("whitespace around the value of " + name)
		}
		if connectionSpecific(name) {
			return 0, errMalformed("connection-specific field " + name)
		}
		switch name {
		case "te":
			if v != "trailers" {
				return 0, errMalformed("te other than trailers")
			}
			q.TrailersOK = true
			continue
		case "host":
			if hosts++; hosts > 1 {
				return 0, errMalformed("more than one host")
			}
			host = v
			continue
		case "content-length":
			n, ok := parseLength(v)
			if !ok || (st.declLen >= 0 && n != st.declLen) {
				return 0, errMalformed("invalid content-length")
			}
			st.declLen = n
			continue
		case "expect":
			if exchange.EqualFold(v, "100-continue") {
				q.ExpectContinue = true
			}
			continue
		case "proxy-authorization", "proxy-authenticate":
			continue
		case "cookie":
			// RFC 9113 §8.2.3: crumbs are joined for HTTP/1.1.
			if cookies++; cookies == 1 {
				cookie = v
			} else {
				cookie += "; " + v
			}
			continue
		}
		q.Header.Add(name, v)
	}
	if cookies > 0 {
		q.Header.Add("cookie", cookie)
	}
	switch {
	case authority == "":
		authority = host
	case host != "" && host != authority:
		return 0, errMalformed("host differs from :authority")
	}
	if !validAuthority(authority) {
		return 0, errMalformed("invalid :authority")
	}
	q.Proto, q.Method, q.Scheme, q.Host, q.Target = exchange.HTTP2, method, c.scheme, authority, path
	q.ServerName, q.EarlyData, q.Frontend = c.info.ServerName, false, c.info.Frontend
	if path == "*" {
		q.Path = path
	} else {
		p := path
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		dp, ok := http1.DecodePath(p)
		if !ok {
			return 0, errMalformed("malformed percent-encoding in :path")
		}
		q.Path = dp
	}
	if f.StreamEnded() {
		if st.declLen > 0 {
			return 0, errMalformed("content-length without DATA")
		}
		q.ContentLength, q.Body = 0, nil
	} else {
		q.ContentLength, q.Body = st.declLen, st
	}
	q.RemoteAddr, q.ClientIP = c.info.RemoteAddr, c.client
	q.Start = time.Now()
	return 0, nil
}

// parseLength parses a content-length value (digits only).
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || v[0] == '+' || v[0] == '-' {
		return 0, false
	}
	return n, true
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return false
		}
	}
	return true
}

// validTarget refuses control characters, spaces, DEL and non-ASCII bytes
// in :path (RFC 3986 has none of them in a URI).
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b >= 0x7f {
			return false
		}
	}
	return true
}

// validAuthority refuses what cannot be a host[:port] (RFC 9113 §8.3.1:
// no userinfo); empty is allowed (routing then uses the default backend).
func validAuthority(s string) bool {
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b <= ' ' || b >= 0x7f, b == '@', b == '/', b == '\\', b == '?', b == '#':
			return false
		}
	}
	return true
}
