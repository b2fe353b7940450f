// Package sni reads the server name from a TLS ClientHello without
// terminating TLS, so that a listener can route a connection by SNI and still
// hand the untouched byte stream to whoever terminates it (a local
// crypto/tls server or a passthrough backend).
//
// The parser is hand-written, allocation-light and bounded: every length is
// checked against what remains before it is used, and the whole ClientHello
// may not exceed MaxClientHelloLen bytes.
package sni

import (
	"errors"
	"fmt"
)

// MaxClientHelloLen bounds the ClientHello handshake message body accepted by
// the parser and by Peek. Real ClientHellos, post-quantum key shares
// included, are well below 4 KiB; 16 KiB matches one maximal TLS record.
const MaxClientHelloLen = 16 * 1024

// Errors returned by ParseClientHello and Peek. Parsing failures wrap
// ErrMalformed.
var (
	// ErrNotTLS means the stream does not start with a TLS handshake record.
	ErrNotTLS = errors.New("sni: not a TLS handshake")
	// ErrNotClientHello means the first handshake message is not a ClientHello.
	ErrNotClientHello = errors.New("sni: first handshake message is not a ClientHello")
	// ErrTooLarge means the ClientHello exceeds MaxClientHelloLen.
	ErrTooLarge = errors.New("sni: ClientHello too large")
	// ErrMalformed means a length or field of the ClientHello is invalid.
	ErrMalformed = errors.New("sni: malformed ClientHello")
)

const (
	handshakeTypeClientHello = 1
	extServerName            = 0
	extALPN                  = 16
	serverNameTypeHostName   = 0
	maxHostNameLen           = 255
)

// ClientHello holds the fields meshgate routes on.
type ClientHello struct {
	// ServerName is the lowercased host_name of the server_name extension,
	// or "" when the client sent none.
	ServerName string
	// ALPN lists the protocols offered in the ALPN extension, in order.
	ALPN []string
	// Raw is the whole handshake message (header included) as read by
	// PeekClientHello, for parsers that need more than this package
	// extracts; nil from ParseClientHello. It is not modified afterwards.
	Raw []byte
}

// reader is a bounds-checked cursor over a byte slice. Once a read fails,
// ok is false and every later read returns zero values.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) u8() int {
	if !r.ok || len(r.b) < 1 {
		r.ok = false
		return 0
	}
	v := int(r.b[0])
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() int {
	if !r.ok || len(r.b) < 2 {
		r.ok = false
		return 0
	}
	v := int(r.b[0])<<8 | int(r.b[1])
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if !r.ok || n < 0 || len(r.b) < n {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// vec8 and vec16 read a vector prefixed by a 1- or 2-byte length.
func (r *reader) vec8() []byte  { return r.bytes(r.u8()) }
func (r *reader) vec16() []byte { return r.bytes(r.u16()) }

// ParseClientHello parses a complete handshake message — the 4-byte
// handshake header (type 1, uint24 length) followed by exactly that many
// body bytes — and returns its server name and ALPN list. It never panics
// and never reads outside msg; msg is not retained.
func ParseClientHello(msg []byte) (ClientHello, error) {
	var ch ClientHello
	if len(msg) < 4 {
		return ch, fmt.Errorf("%w: short handshake header", ErrMalformed)
	}
	if msg[0] != handshakeTypeClientHello {
		return ch, ErrNotClientHello
	}
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if n > MaxClientHelloLen {
		return ch, ErrTooLarge
	}
	if len(msg)-4 != n {
		return ch, fmt.Errorf("%w: handshake length %d, have %d bytes", ErrMalformed, n, len(msg)-4)
	}
	r := reader{b: msg[4:], ok: true}
	r.bytes(2 + 32) // legacy_version, random
	if sid := r.vec8(); len(sid) > 32 {
		return ch, fmt.Errorf("%w: session id longer than 32 bytes", ErrMalformed)
	}
	if cs := r.vec16(); r.ok && (len(cs) < 2 || len(cs)%2 != 0) {
		return ch, fmt.Errorf("%w: cipher suites length", ErrMalformed)
	}
	if cm := r.vec8(); r.ok && len(cm) < 1 {
		return ch, fmt.Errorf("%w: no compression methods", ErrMalformed)
	}
	if !r.ok {
		return ch, fmt.Errorf("%w: truncated fixed fields", ErrMalformed)
	}
	if len(r.b) == 0 {
		return ch, nil // no extensions (SSL 3.0 style hello); no SNI
	}
	exts := r.vec16()
	if !r.ok || len(r.b) != 0 {
		return ch, fmt.Errorf("%w: extensions length", ErrMalformed)
	}
	if err := parseExtensions(exts, &ch); err != nil {
		return ClientHello{}, err
	}
	return ch, nil
}

func parseExtensions(b []byte, ch *ClientHello) error {
	r := reader{b: b, ok: true}
	var seenSNI, seenALPN bool
	for len(r.b) > 0 {
		typ := r.u16()
		data := r.vec16()
		if !r.ok {
			return fmt.Errorf("%w: truncated extension", ErrMalformed)
		}
		var err error
		switch typ {
		case extServerName:
			if seenSNI {
				return fmt.Errorf("%w: duplicate server_name", ErrMalformed)
			}
			seenSNI = true
			ch.ServerName, err = parseServerName(data)
		case extALPN:
			if seenALPN {
				return fmt.Errorf("%w: duplicate ALPN", ErrMalformed)
			}
			seenALPN = true
			ch.ALPN, err = parseALPN(data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseServerName parses the ServerNameList of RFC 6066 section 3 and
// returns the single host_name entry, lowercased.
func parseServerName(b []byte) (string, error) {
	r := reader{b: b, ok: true}
	list := r.vec16()
	if !r.ok || len(r.b) != 0 || len(list) == 0 {
		return "", fmt.Errorf("%w: server_name list length", ErrMalformed)
	}
	lr := reader{b: list, ok: true}
	name := ""
	for len(lr.b) > 0 {
		typ := lr.u8()
		v := lr.vec16()
		if !lr.ok {
			return "", fmt.Errorf("%w: truncated server_name entry", ErrMalformed)
		}
		if typ != serverNameTypeHostName {
			continue // unknown name types are skipped, as crypto/tls does
		}
		if name != "" {
			return "", fmt.Errorf("%w: more than one host_name", ErrMalformed)
		}
		h, err := hostName(v)
		if err != nil {
			return "", err
		}
		name = h
	}
	return name, nil
}

// hostName validates an SNI host name (printable ASCII without spaces, no
// trailing dot, at most 255 bytes) and lowercases it.
func hostName(v []byte) (string, error) {
	if len(v) == 0 || len(v) > maxHostNameLen || v[len(v)-1] == '.' {
		return "", fmt.Errorf("%w: invalid host_name length or trailing dot", ErrMalformed)
	}
	lower := false
	for _, c := range v {
		if c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("%w: invalid byte 0x%02x in host_name", ErrMalformed, c)
		}
		if 'A' <= c && c <= 'Z' {
			lower = true
		}
	}
	if !lower {
		return string(v), nil
	}
	out := make([]byte, len(v))
	for i, c := range v {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out), nil
}

// parseALPN parses the ProtocolNameList of RFC 7301 section 3.1.
func parseALPN(b []byte) ([]string, error) {
	r := reader{b: b, ok: true}
	list := r.vec16()
	if !r.ok || len(r.b) != 0 || len(list) == 0 {
		return nil, fmt.Errorf("%w: ALPN list length", ErrMalformed)
	}
	lr := reader{b: list, ok: true}
	var out []string
	for len(lr.b) > 0 {
		p := lr.vec8()
		if !lr.ok || len(p) == 0 {
			return nil, fmt.Errorf("%w: ALPN protocol name", ErrMalformed)
		}
		out = append(out, string(p))
	}
	return out, nil
}
