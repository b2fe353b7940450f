package h2

import (
	"encoding/binary"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// Output: frames are appended to c.out under c.mu; flushLocked writes
// them. RFC 9113 §4.1 frame layout: length (24 bits), type, flags, stream
// identifier (31 bits), payload.

const (
	frameHeaderLen = 9
	// outHighWater is how much output a stream may leave pending while a
	// write is in flight before it waits for the write to finish.
	outHighWater = 256 << 10
	// maxQueuedControl bounds the output queued by the reader (PING and
	// SETTINGS acknowledgements, RST_STREAM) that the client does not
	// read: beyond it the connection is ended (a flood).
	maxQueuedControl = 4 << 20
	// maxOutKeep is the largest output buffer kept between writes.
	maxOutKeep = 64 << 10
)

// appendFrameHeader appends a frame header to b.
func appendFrameHeader(b []byte, length int, typ http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

// appendDataLocked appends one DATA frame.
func (c *conn) appendDataLocked(id uint32, p []byte, end bool) {
	var fl http2.Flags
	if end {
		fl = http2.FlagDataEndStream
	}
	c.out = appendFrameHeader(c.out, len(p), http2.FrameData, fl, id)
	c.out = append(c.out, p...)
}

func (c *conn) appendRSTLocked(id uint32, code http2.ErrCode) {
	c.out = appendFrameHeader(c.out, 4, http2.FrameRSTStream, 0, id)
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(code))
}

func (c *conn) appendWindowUpdateLocked(id uint32, n int) {
	c.out = appendFrameHeader(c.out, 4, http2.FrameWindowUpdate, 0, id)
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(n)&0x7fffffff)
}

func (c *conn) appendGoAwayLocked(last uint32, code http2.ErrCode, debug string) {
	c.out = appendFrameHeader(c.out, 8+len(debug), http2.FrameGoAway, 0, 0)
	c.out = binary.BigEndian.AppendUint32(c.out, last&0x7fffffff)
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(code))
	c.out = append(c.out, debug...)
}

func (c *conn) appendSettingsLocked(ss ...http2.Setting) {
	c.out = appendFrameHeader(c.out, 6*len(ss), http2.FrameSettings, 0, 0)
	for _, s := range ss {
		c.out = binary.BigEndian.AppendUint16(c.out, uint16(s.ID))
		c.out = binary.BigEndian.AppendUint32(c.out, s.Val)
	}
}

func (c *conn) appendSettingsAckLocked() {
	c.out = appendFrameHeader(c.out, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
}

func (c *conn) appendPingAckLocked(data [8]byte) {
	c.out = appendFrameHeader(c.out, 8, http2.FramePing, http2.FlagPingAck, 0)
	c.out = append(c.out, data[:]...)
}

// appendHeadersLocked HPACK-encodes a response (or trailer) block and
// appends it as HEADERS and, beyond the peer's frame size, CONTINUATION
// frames. status 0 means trailers; cl >= 0 adds content-length; date adds
// a date field when h has none.
func (c *conn) appendHeadersLocked(id uint32, status int, h *exchange.Header, cl int64, date, end bool) {
	c.hbuf.Reset()
	enc := c.enc
	if status != 0 {
		_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	}
	hasDate := !date
	if h != nil {
		for _, f := range h.Fields() {
			name, ok := responseName(f.Name)
			if !ok {
				continue
			}
			if name == "date" {
				hasDate = true
			}
			_ = enc.WriteField(hpack.HeaderField{Name: name, Value: f.Value})
		}
	}
	if cl >= 0 {
		_ = enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(cl, 10)})
	}
	if !hasDate {
		_ = enc.WriteField(hpack.HeaderField{Name: "date", Value: c.srv.date.get(time.Now())})
	}
	block := c.hbuf.Bytes()
	max := int(c.peerMaxFrame)
	typ := http2.FrameHeaders
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), max)
		var fl http2.Flags
		if first && end {
			fl |= http2.FlagHeadersEndStream
		}
		if n == len(block) {
			fl |= http2.FlagHeadersEndHeaders
		}
		c.out = appendFrameHeader(c.out, n, typ, fl, id)
		c.out = append(c.out, block[:n]...)
		block = block[n:]
		typ = http2.FrameContinuation
	}
}

// statusText returns the decimal status code, without allocating for the
// common ones.
func statusText(status int) string {
	switch status {
	case 200:
		return "200"
	case 204:
		return "204"
	case 206:
		return "206"
	case 301:
		return "301"
	case 302:
		return "302"
	case 304:
		return "304"
	case 308:
		return "308"
	case 400:
		return "400"
	case 404:
		return "404"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	}
	return strconv.Itoa(status)
}

// commonNames maps the canonical spelling of frequent response fields to
// the lowercase one HTTP/2 requires (RFC 9113 §8.2.1), so that lowering
// them does not allocate.
var commonNames = func() map[string]string {
	m := make(map[string]string)
	for _, n := range []string{
		"accept-ranges", "access-control-allow-origin", "age", "alt-svc", "cache-control",
		"content-disposition", "content-encoding", "content-language", "content-location",
		"content-range", "content-security-policy", "content-type", "date", "etag", "expires",
		"last-modified", "link", "location", "referrer-policy", "retry-after", "server",
		"set-cookie", "strict-transport-security", "trailer", "vary", "via", "www-authenticate",
		"x-content-type-options", "x-frame-options", "x-request-id", "x-xss-protection",
		"grpc-status", "grpc-message", "grpc-encoding", "grpc-accept-encoding",
	} {
		m[http.CanonicalHeaderKey(n)] = n
	}
	return m
}()

// responseName returns the HTTP/2 spelling of a response field name, or
// false for names that must not be sent: connection-specific fields (RFC
// 9113 §8.2.2), content-length (the front end writes the framing),
// pseudo-fields and empty names.
func responseName(name string) (string, bool) {
	if name == "" || name[0] == ':' {
		return "", false
	}
	lower := true
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			lower = false
			break
		}
	}
	if !lower {
		if l, ok := commonNames[name]; ok {
			return l, true
		}
		name = strings.ToLower(name)
	}
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length", "te":
		return "", false
	}
	return name, true
}

// kickLocked writes the pending output unless a write is in flight or a
// stream yields before writing (kickAfterYieldLocked): either writes it
// too.
func (c *conn) kickLocked() {
	if !c.flushing && !c.flushSoon {
		c.flushLocked()
	}
}

// kickAfterYieldLocked is kickLocked for a stream whose response is
// complete: it releases c.mu and yields its processor once
// (runtime.Gosched) before writing, so that the goroutines already
// runnable (typically other streams' workers woken by the same network
// poll, their upstream responses read) append their frames first and one
// write carries them all. Streams that complete meanwhile find flushSoon
// set and leave their frames to it. With nothing else runnable Gosched
// returns at once, so an idle server answers as soon as before; the yield
// costs a trip through the scheduler's global queue, a write saved is a
// system call and a TLS record.
func (c *conn) kickAfterYieldLocked() {
	if c.flushing || c.flushSoon {
		return
	}
	c.flushSoon = true
	c.mu.Unlock()
	runtime.Gosched()
	c.mu.Lock()
	c.flushSoon = false
	c.kickLocked()
}

// flushLocked writes c.out until it is empty, releasing c.mu during each
// write. The caller holds c.mu and no write is in flight.
func (c *conn) flushLocked() {
	for len(c.out) > 0 && c.werr == nil {
		c.flushing = true
		buf := c.out
		c.out = c.spare[:0]
		c.spare = nil
		c.mu.Unlock()
		if d := c.srv.cfg.WriteTimeout; d > 0 {
			_ = c.nc.SetWriteDeadline(time.Now().Add(d))
		}
		_, err := c.nc.Write(buf)
		c.mu.Lock()
		c.flushing = false
		if cap(buf) <= maxOutKeep {
			c.spare = buf[:0]
		}
		if err != nil {
			c.werr = err
			c.out = c.out[:0]
			c.failLocked(errConnClosed)
			_ = c.nc.Close()
		}
		c.space.Broadcast()
	}
	if c.closeAfter && len(c.out) == 0 {
		_ = c.nc.Close()
	}
}

// dateCache formats the date field once per second.
type dateCache struct{ p atomic.Pointer[dateValue] }

type dateValue struct {
	sec int64
	s   string
}

func (d *dateCache) get(now time.Time) string {
	sec := now.Unix()
	if v := d.p.Load(); v != nil && v.sec == sec {
		return v.s
	}
	v := &dateValue{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	d.p.Store(v)
	return v.s
}
