// Package proxyproto parses the PROXY protocol header (HAProxy's
// proxy-protocol.txt, versions 1 and 2) that a load balancer writes at the
// start of a TCP connection, on the client listeners' per-connection path.
//
// It exists for speed: go-proxyproto (still used by the L4 services, which
// also write headers) costs about 60 µs of CPU per connection on the
// round-robin reconnect benchmark (a bufio.Reader and io.MultiReader per
// connection, encoding/binary's reflection on the v2 addresses). Parse
// works on bytes the caller already read, allocates nothing, and leaves the
// bytes after the header to the caller, so the header and the ClientHello
// that follows it cost one read.
//
// Accepted: v1 "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" (exactly
// those fields, single spaces, at most 107 bytes) and "PROXY UNKNOWN...\r\n";
// v2 with the LOCAL command, or PROXY with the INET, INET6 or UNIX family
// and the STREAM or DGRAM transport (TLVs are skipped, not interpreted). A header that carries no IP
// addresses (LOCAL, UNKNOWN, UNIX) reports Local: the connection's own
// addresses apply. Anything else is an error, as is a v2 header longer than
// the caller's buffer.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
)

// Errors of Parse. Every error but ErrIncomplete is final for the
// connection.
var (
	// ErrIncomplete: the bytes are a proper prefix of a possible header;
	// read more and parse again.
	ErrIncomplete = errors.New("proxyproto: incomplete header")
	// ErrNoHeader: the connection does not start with a PROXY header.
	ErrNoHeader = errors.New("proxyproto: no PROXY header")
	// ErrMalformed: a header that breaks the specification.
	ErrMalformed = errors.New("proxyproto: malformed header")
)

// MaxV1Length is the longest v1 header, CRLF included (the specification's
// 107 bytes).
const MaxV1Length = 107

// v2 header layout (proxy-protocol.txt section 2.2).
const (
	v2Fixed    = 16 // signature, version/command, family/protocol, length
	v2Addr4    = 12 // two IPv4 addresses, two ports
	v2Addr6    = 36
	v2AddrUnix = 216
)

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Header is what a PROXY header says about the connection.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local reports a header without IP addresses (v2 LOCAL, v1 UNKNOWN,
	// a v2 UNIX family): the connection's own addresses stand.
	Local bool
	// Source and Destination are the client and the address it
	// connected to, when not Local.
	Source, Destination netip.AddrPort
}

// Parse parses the PROXY header at the start of b and returns it with its
// length in bytes; b[n:] is the connection's payload. With ErrIncomplete
// the caller reads more (an error once b is as long as it can get). It
// does not retain b.
func Parse(b []byte) (h Header, n int, err error) {
	switch {
	case len(b) == 0:
		return h, 0, ErrIncomplete
	case b[0] == sigV1[0]:
		return parseV1(b)
	case b[0] == sigV2[0]:
		return parseV2(b)
	}
	return h, 0, ErrNoHeader
}

// prefixOf reports whether b starts with sig, ErrIncomplete when b is a
// shorter prefix of it, ErrNoHeader when it differs.
func prefixOf(b, sig []byte) error {
	m := min(len(b), len(sig))
	if !bytes.Equal(b[:m], sig[:m]) {
		return ErrNoHeader
	}
	if m < len(sig) {
		return ErrIncomplete
	}
	return nil
}

func parseV1(b []byte) (h Header, n int, err error) {
	if err := prefixOf(b, sigV1); err != nil {
		return h, 0, err
	}
	end := bytes.IndexByte(b[:min(len(b), MaxV1Length)], '\n')
	if end < 0 {
		if len(b) >= MaxV1Length {
			return h, 0, ErrMalformed
		}
		return h, 0, ErrIncomplete
	}
	if end == 0 || b[end-1] != '\r' {
		return h, 0, ErrMalformed
	}
	line := b[len(sigV1) : end-1]
	h.Version = 1
	proto, rest, _ := bytes.Cut(line, []byte(" "))
	switch string(proto) {
	case "UNKNOWN":
		h.Local = true // the rest of the line is ignored (specification)
		return h, end + 1, nil
	case "TCP4", "TCP6":
	default:
		return h, 0, ErrMalformed
	}
	var f [4][]byte
	for i := range f {
		var ok bool
		f[i], rest, ok = bytes.Cut(rest, []byte(" "))
		if ok != (i < 3) {
			return h, 0, ErrMalformed
		}
	}
	v4 := proto[3] == '4'
	src, ok1 := v1Addr(f[0], v4)
	dst, ok2 := v1Addr(f[1], v4)
	sport, ok3 := v1Port(f[2])
	dport, ok4 := v1Port(f[3])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return h, 0, ErrMalformed
	}
	h.Source, h.Destination = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return h, end + 1, nil
}

// v1Addr parses a v1 address field: dotted IPv4 for TCP4, IPv6 (an
// IPv4-mapped one included) without a zone for TCP6. The field's string
// copy is v1's one allocation (netip's parser takes a string).
func v1Addr(s []byte, v4 bool) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(s))
	if err != nil || a.Zone() != "" || a.Is4() != v4 {
		return netip.Addr{}, false
	}
	return a, true
}

// v1Port parses a decimal port, 0 to 65535, digits only.
func v1Port(s []byte) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return uint16(v), v <= 65535
}

func parseV2(b []byte) (h Header, n int, err error) {
	if err := prefixOf(b, sigV2); err != nil {
		return h, 0, err
	}
	if len(b) < v2Fixed {
		return h, 0, ErrIncomplete
	}
	verCmd, fam := b[12], b[13]
	if verCmd>>4 != 2 {
		return h, 0, ErrMalformed
	}
	local := false
	switch verCmd & 0x0f {
	case 0: // LOCAL: health checks and the like; addresses are ignored
		local = true
	case 1: // PROXY
	default:
		return h, 0, ErrMalformed
	}
	if !local && fam&0x0f != 1 && fam&0x0f != 2 {
		return h, 0, ErrMalformed // PROXY needs a transport: STREAM or DGRAM
	}
	var need int
	switch fam >> 4 {
	case 0: // AF_UNSPEC
		if !local {
			return h, 0, ErrMalformed
		}
	case 1:
		need = v2Addr4
	case 2:
		need = v2Addr6
	case 3:
		need = v2AddrUnix
	default:
		return h, 0, ErrMalformed
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if length < need {
		return h, 0, ErrMalformed
	}
	if len(b) < v2Fixed+length {
		return h, 0, ErrIncomplete
	}
	h.Version = 2
	a := b[v2Fixed:]
	switch {
	case local || fam>>4 == 3:
		h.Local = true
	case fam>>4 == 1:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	default:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	return h, v2Fixed + length, nil
}
