package http1

import (
	"errors"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

var (
	errWroteHeader = errors.New("http1: response head already written")
	errNoHeader    = errors.New("http1: body written before the response head")
	errTooLong     = errors.New("http1: response body longer than its Content-Length")
)

// appendStatusText appends "code reason" as net/http writes it.
func appendStatusText(b []byte, status int) []byte {
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if t := http.StatusText(status); t != "" {
		return append(b, t...)
	}
	b = append(b, "status code "...)
	return strconv.AppendInt(b, int64(status), 10)
}

// buf returns the pending output, borrowing a buffer when there is none.
func (c *conn) buf() []byte {
	if c.wbuf == nil {
		c.wbuf = GetBuf(SmallBuffer)
		c.out = c.wbuf.B[:0]
	}
	return c.out
}

// WriteHeader implements exchange.ResponseWriter. The head is buffered and
// goes out with the first body bytes (one write for a small response),
// except interim heads, which are sent at once.
func (c *conn) WriteHeader(status int, h *exchange.Header, contentLength int64) error {
	if c.wroteFinal {
		return errWroteHeader
	}
	r := &c.req
	if status < 200 && status != 101 {
		if r.Proto == exchange.HTTP10 {
			return nil
		}
		if status == 100 {
			c.sent100 = true
		}
		b := append(c.buf(), "HTTP/1.1 "...)
		b = appendStatusText(b, status)
		b = append(b, "\r\n"...)
		b = AppendFields(b, h)
		c.out = append(b, "\r\n"...)
		return c.flush()
	}
	c.wroteFinal = true
	if d := c.srv.cfg.WriteTimeout; d > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(d))
	}
	c.noBody = r.Method == "HEAD" || status < 200 || status == 204 || status == 304
	b := append(c.buf(), "HTTP/1.1 "...)
	b = appendStatusText(b, status)
	b = append(b, "\r\n"...)
	hasDate := false
	for _, f := range h.Fields() {
		if len(f.Name) == 4 && exchange.EqualFold(f.Name, "Date") {
			hasDate = true
		}
		b = AppendField(b, f.Name, f.Value)
	}
	if !hasDate {
		b = append(b, "Date: "...)
		b = append(b, c.srv.date.get(time.Now())...)
		b = append(b, "\r\n"...)
	}
	switch {
	case c.noBody:
		if contentLength >= 0 && status != 204 && status >= 200 {
			b = appendContentLength(b, contentLength)
		}
	case contentLength >= 0:
		b = appendContentLength(b, contentLength)
		c.remaining = contentLength
	case r.Proto == exchange.HTTP11:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
		c.chunked = true
	default:
		c.closeAfter = true // the body ends when the connection does
	}
	if r.Close || c.srv.draining.Load() {
		c.closeAfter = true
	}
	switch {
	case c.closeAfter:
		b = append(b, "Connection: close\r\n"...)
	case r.Proto == exchange.HTTP10:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	c.out = append(b, "\r\n"...)
	return nil
}

func appendContentLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// Write implements exchange.ResponseWriter.
func (c *conn) Write(p []byte) (int, error) {
	if !c.wroteFinal {
		return 0, errNoHeader
	}
	if c.noBody || len(p) == 0 {
		return len(p), nil
	}
	if c.remaining >= 0 {
		if int64(len(p)) > c.remaining {
			return 0, errTooLong
		}
		c.remaining -= int64(len(p))
	}
	b := c.buf()
	if c.chunked {
		b = AppendChunkHeader(b, len(p))
	}
	if free := cap(b) - len(b); len(p) > free && c.wbuf.class < 2 && len(b)+len(p)+2 <= LargeBuffer {
		// A body larger than the small buffer: grow to the copy buffer
		// size, so it still leaves in one write.
		nb := GetBuf(LargeBuffer)
		b = append(nb.B[:0], b...)
		PutBuf(c.wbuf)
		c.wbuf = nb
	}
	if len(b)+len(p)+2 <= cap(b) {
		b = append(b, p...)
		if c.chunked {
			b = append(b, '\r', '\n')
		}
		c.out = b
		return len(p), nil
	}
	// Too large for the buffer: pending bytes, then p straight.
	c.out = b
	if err := c.flush(); err != nil {
		return 0, err
	}
	if _, err := c.nc.Write(p); err != nil {
		return 0, err
	}
	if c.chunked {
		c.out = append(c.out, '\r', '\n')
	}
	return len(p), nil
}

// Flush implements exchange.ResponseWriter.
func (c *conn) Flush() error { return c.flush() }

func (c *conn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	if c.wbuf != nil && c.wbuf.class > 0 {
		PutBuf(c.wbuf) // keep the small buffer only
		c.wbuf, c.out = nil, nil
	}
	return err
}

// Finish implements exchange.ResponseWriter.
func (c *conn) Finish(trailer *exchange.Header) error {
	if !c.wroteFinal {
		return errNoHeader
	}
	if c.remaining > 0 {
		c.closeAfter = true
		_ = c.flush()
		return errors.New("http1: response body shorter than its Content-Length")
	}
	if c.chunked {
		c.out = AppendLastChunk(c.buf(), trailer)
	}
	c.finished = true
	return nil // sent when the handler returns (endResponse)
}

// endResponse sends what the handler left buffered once it returned, so
// that its accounting (metrics, access log) precedes the client seeing the
// end of the response.
func (c *conn) endResponse() error {
	if c.hold != nil && c.lastResponse() {
		c.hold.HoldUntilClose()
	}
	err := c.flush()
	if c.wbuf != nil {
		PutBuf(c.wbuf)
		c.wbuf, c.out = nil, nil
	}
	if c.srv.cfg.WriteTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	return err
}

// lastResponse reports that the connection closes straight after the
// response being ended, with nothing more to read from the client first:
// its output may then be held until the close (ConnInfo.Hold).
func (c *conn) lastResponse() bool {
	return (c.closeAfter || c.req.Close) && !c.upgraded && !c.linger &&
		(c.req.Body == nil || c.body.done)
}

// Upgrade implements exchange.Upgrader.
func (c *conn) Upgrade(h *exchange.Header) (exchange.Stream, error) {
	if c.wroteFinal {
		return nil, errWroteHeader
	}
	b := append(c.buf(), "HTTP/1.1 101 Switching Protocols\r\n"...)
	b = AppendFields(b, h)
	c.out = append(b, "Connection: Upgrade\r\n\r\n"...)
	c.wroteFinal, c.upgraded = true, true
	if err := c.flush(); err != nil {
		return nil, err
	}
	if c.wbuf != nil {
		PutBuf(c.wbuf)
		c.wbuf, c.out = nil, nil
	}
	_ = c.nc.SetDeadline(time.Time{})
	return (*stream)(c), nil
}

// stream is the client connection after a protocol switch.
type stream conn

func (s *stream) Read(p []byte) (int, error) {
	c := (*conn)(s)
	if len(c.br.Buffered()) > 0 {
		return c.br.Read(p)
	}
	c.br.Release()
	return c.nc.Read(p)
}

func (s *stream) Write(p []byte) (int, error) { return s.nc.Write(p) }

func (s *stream) Close() error { return s.nc.Close() }

// CloseWrite sends TLS close_notify (over TLS) and half-closes the TCP
// connection.
func (s *stream) CloseWrite() error {
	c := (*conn)(s)
	if c.tc != nil {
		if err := c.tc.CloseWrite(); err != nil {
			return err
		}
	}
	if cw, ok := c.rawConn().(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
