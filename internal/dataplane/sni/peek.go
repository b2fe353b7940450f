package sni

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	maxRecordPayload    = 16 * 1024 // TLSPlaintext.length limit (RFC 8446 5.1)
	// maxRecords bounds how many records one ClientHello may be split
	// across. Real clients use one; a few is generous.
	maxRecords = 8
	// MaxPeekBytes bounds the bytes Peek reads and buffers from a connection.
	MaxPeekBytes = MaxClientHelloLen + 4 + maxRecords*recordHeaderLen
)

// Peek reads the TLS ClientHello at the start of c and returns its server
// name (lowercased, "" when the client sent no SNI) and a connection that
// replays every byte read so far before reading from c again.
//
// With timeout > 0, Peek sets c's read deadline to now+timeout first and
// clears it (zero time) before returning; a deadline set on c before the
// call is not restored. With timeout <= 0 Peek leaves c's deadlines
// untouched, so a deadline the caller set bounds the peek. It reads at
// most MaxPeekBytes, in as few reads as the bytes arrive in (bytes read past
// the ClientHello are replayed too); a ClientHello split across up to 8 TLS
// records is reassembled.
//
// wrapped is never nil, even on error, and owns c from now on: use wrapped
// instead of c. err wraps ErrNotTLS, ErrNotClientHello, ErrTooLarge or
// ErrMalformed when the bytes are not a usable ClientHello (wrapped may
// still be handed to, say, a crypto/tls server, which answers with an
// alert), or is the I/O error (deadline exceeded, EOF) that stopped the read.
//
// Peek is meant to run in the goroutine that owns c; it blocks for at most
// timeout.
func Peek(c net.Conn, timeout time.Duration) (serverName string, wrapped net.Conn, err error) {
	ch, wrapped, err := PeekClientHello(c, timeout)
	return ch.ServerName, wrapped, err
}

// PeekClientHello is Peek returning the parsed ClientHello (server name and
// ALPN). The same contract applies.
func PeekClientHello(c net.Conn, timeout time.Duration) (ClientHello, net.Conn, error) {
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return ClientHello{}, &Conn{Conn: c}, fmt.Errorf("sni: set read deadline: %w", err)
		}
		defer c.SetReadDeadline(time.Time{})
	}
	raw, msg, err := readClientHello(c)
	wrapped := newConn(c, raw)
	if err != nil {
		return ClientHello{}, wrapped, err
	}
	ch, err := ParseClientHello(msg)
	if err == nil {
		ch.Raw = msg
	}
	return ch, wrapped, err
}

// readClientHello reads TLS records from c until one complete handshake
// message has been collected. raw holds every byte read (to replay); msg is
// the handshake message (header and body).
//
// It reads into raw's spare room, so a ClientHello that has arrived whole
// (the usual case) costs one read(2), not one per record header and
// payload; the bytes read past the hello, if the client sent any before
// our answer (TLS 1.3 early data), are in raw and replayed with it.
func readClientHello(c net.Conn) (raw, msg []byte, err error) {
	raw = make([]byte, 0, 2048)
	off := 0 // start of the next record in raw
	for records := 0; ; records++ {
		if records == maxRecords {
			return raw, nil, fmt.Errorf("%w: split across more than %d records", ErrTooLarge, maxRecords)
		}
		if raw, err = fill(c, raw, off+recordHeaderLen); err != nil {
			return raw, nil, err
		}
		h := raw[off : off+recordHeaderLen]
		if h[0] != recordTypeHandshake || h[1] != 3 {
			if records == 0 {
				return raw, nil, ErrNotTLS
			}
			return raw, nil, fmt.Errorf("%w: non-handshake record inside ClientHello", ErrMalformed)
		}
		n := int(h[3])<<8 | int(h[4])
		if n == 0 || n > maxRecordPayload {
			return raw, nil, fmt.Errorf("%w: record length %d", ErrMalformed, n)
		}
		payloadStart := off + recordHeaderLen
		if raw, err = fill(c, raw, payloadStart+n); err != nil {
			return raw, nil, err
		}
		off = payloadStart + n
		if records == 0 {
			msg = raw[payloadStart:off:off] // no copy while the hello is one record
		} else {
			msg = append(msg, raw[payloadStart:off]...)
		}
		if len(msg) < 4 {
			continue
		}
		if msg[0] != handshakeTypeClientHello {
			return raw, nil, ErrNotClientHello
		}
		need := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		if need > MaxClientHelloLen {
			return raw, nil, ErrTooLarge
		}
		if len(msg) >= 4+need {
			return raw, msg[:4+need], nil
		}
	}
}

// fill reads from r into buf's spare room (growing it) until buf holds at
// least n bytes, never holding more than MaxPeekBytes. A stream that ends
// before n bytes is io.ErrUnexpectedEOF (io.EOF when nothing was read).
func fill(r io.Reader, buf []byte, n int) ([]byte, error) {
	if n > MaxPeekBytes {
		return buf, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxPeekBytes)
	}
	if cap(buf) < n {
		buf = slices.Grow(buf, min(max(n, 2*cap(buf)), MaxPeekBytes)-len(buf))
	}
	start := len(buf)
	for len(buf) < n {
		got, err := r.Read(buf[len(buf):min(cap(buf), MaxPeekBytes)])
		buf = buf[:len(buf)+got]
		if err != nil {
			if len(buf) >= n {
				break
			}
			if err == io.EOF && len(buf) > start {
				err = io.ErrUnexpectedEOF
			}
			return buf, fmt.Errorf("sni: read ClientHello: %w", err)
		}
	}
	return buf, nil
}

// Conn is a net.Conn that first replays bytes already read from the
// underlying connection. It is safe for concurrent use to the same extent
// as the connection it wraps.
type Conn struct {
	net.Conn
	drained atomic.Bool
	mu      sync.Mutex // guards buf while not drained
	buf     []byte
}

func newConn(c net.Conn, buf []byte) *Conn {
	w := &Conn{Conn: c, buf: buf}
	if len(buf) == 0 {
		w.drained.Store(true)
	}
	return w
}

// Read returns buffered bytes first, then reads from the underlying conn.
func (c *Conn) Read(p []byte) (int, error) {
	if c.drained.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	if len(c.buf) == 0 {
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	if len(c.buf) == 0 {
		c.buf = nil
		c.drained.Store(true)
	}
	c.mu.Unlock()
	return n, nil
}

// NetConn returns the underlying connection. Reading from it directly skips
// the replayed bytes.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the underlying connection when it supports it
// (see CloseWrite).
func (c *Conn) CloseWrite() error { return CloseWrite(c.Conn) }

// ErrNoCloseWrite is returned by CloseWrite for connections that cannot be
// half-closed.
var ErrNoCloseWrite = errors.New("sni: connection does not support CloseWrite")

// CloseWrite shuts down the writing side of c, looking through wrappers:
// it uses c.CloseWrite if present, else the connection returned by a
// NetConn() or Raw() method (crypto/tls, go-proxyproto and this package's
// wrappers). It returns ErrNoCloseWrite when none applies.
func CloseWrite(c net.Conn) error {
	for range 8 { // bound the unwrapping depth
		switch v := c.(type) {
		case interface{ CloseWrite() error }:
			return v.CloseWrite()
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		case interface{ Raw() net.Conn }:
			c = v.Raw()
		default:
			return ErrNoCloseWrite
		}
	}
	return ErrNoCloseWrite
}
