package tls12

import (
	"errors"
	"fmt"
)

// Handshake message types (RFC 5246 section 7.4).
const (
	typeHelloRequest      uint8 = 0
	typeClientHello       uint8 = 1
	typeServerHello       uint8 = 2
	typeCertificate       uint8 = 11
	typeServerKeyExchange uint8 = 12
	typeServerHelloDone   uint8 = 14
	typeClientKeyExchange uint8 = 16
	typeFinished          uint8 = 20
)

// Extension numbers (IANA TLS ExtensionType registry).
const (
	extServerName          uint16 = 0
	extSupportedGroups     uint16 = 10
	extECPointFormats      uint16 = 11
	extSignatureAlgorithms uint16 = 13
	extALPN                uint16 = 16
	extExtendedMaster      uint16 = 23
	extSessionTicket       uint16 = 35
	extPreSharedKey        uint16 = 41
	extEarlyData           uint16 = 42
	extSupportedVersions   uint16 = 43
	extPSKModes            uint16 = 45
	extKeyShare            uint16 = 51
	extRenegotiationInfo   uint16 = 0xff01
)

// MaxClientHelloLen bounds the ClientHello body this package parses.
const MaxClientHelloLen = 16 * 1024

// ErrMalformed is wrapped by every ClientHello parsing error.
var ErrMalformed = errors.New("tls12: malformed ClientHello")

// ClientHello is a parsed ClientHello (RFC 5246 section 7.4.1.2 with the
// extensions of RFC 6066, 7301, 7627, 5746, 8422 and 8446 this package
// looks at). Parsing is strict: a hello this parser refuses is left to
// crypto/tls, which answers it with the proper alert.
type ClientHello struct {
	// ServerName is the lowercased host_name of server_name, or "".
	ServerName string
	// ALPN lists the offered application protocols in client order.
	ALPN []string

	raw             []byte // the whole message, header included
	version         uint16
	random          []byte
	sessionID       []byte
	suites          []uint16
	nullCompression bool
	groups          []uint16
	pointFormats    []byte
	hasPointFormats bool
	sigAlgs         []uint16
	ems             bool
	renegSCSV       bool
	renegExt        bool
	renegInfo       []byte
	fallbackSCSV    bool
	ticketExt       bool
	versions        []uint16
	tls13Extensions bool // key_share, pre_shared_key, early_data or psk_key_exchange_modes
}

// ParseClientHello parses one complete handshake message (4-byte header,
// type client_hello, then exactly the declared body). It never panics and
// keeps references into msg.
func ParseClientHello(msg []byte) (*ClientHello, error) {
	if len(msg) < 4 || msg[0] != typeClientHello {
		return nil, fmt.Errorf("%w: not a client_hello message", ErrMalformed)
	}
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if n > MaxClientHelloLen || n != len(msg)-4 {
		return nil, fmt.Errorf("%w: body length %d for %d bytes", ErrMalformed, n, len(msg)-4)
	}
	h := &ClientHello{raw: msg}
	r := newReader(msg[4:])
	h.version = r.u16()
	h.random = r.take(randomLen)
	h.sessionID = r.vec8()
	suites := r.vec16()
	comp := r.vec8()
	if !r.ok || len(h.sessionID) > 32 || len(suites) < 2 || len(suites)%2 != 0 || len(comp) == 0 {
		return nil, fmt.Errorf("%w: fixed fields", ErrMalformed)
	}
	h.suites = make([]uint16, len(suites)/2)
	for i := range h.suites {
		s := uint16(suites[2*i])<<8 | uint16(suites[2*i+1])
		h.suites[i] = s
		switch s {
		case scsvRenegotiation:
			h.renegSCSV = true
		case scsvFallback:
			h.fallbackSCSV = true
		}
	}
	for _, c := range comp {
		if c == 0 {
			h.nullCompression = true
		}
	}
	if len(r.b) == 0 {
		return h, nil // a hello without extensions
	}
	exts := r.vec16()
	if !r.done() {
		return nil, fmt.Errorf("%w: extensions length", ErrMalformed)
	}
	if err := h.parseExtensions(exts); err != nil {
		return nil, err
	}
	return h, nil
}

// maxExtensions bounds the extensions of a hello this parser accepts; real
// clients send fewer than 30 (GREASE included).
const maxExtensions = 64

func (h *ClientHello) parseExtensions(b []byte) error {
	var seen [maxExtensions]uint16
	r := newReader(b)
	for n := 0; len(r.b) > 0; n++ {
		typ := r.u16()
		data := r.vec16()
		if !r.ok {
			return fmt.Errorf("%w: truncated extension", ErrMalformed)
		}
		if n == maxExtensions {
			return fmt.Errorf("%w: more than %d extensions", ErrMalformed, maxExtensions)
		}
		for _, t := range seen[:n] {
			if t == typ {
				return fmt.Errorf("%w: duplicate extension %d", ErrMalformed, typ)
			}
		}
		seen[n] = typ
		if err := h.parseExtension(typ, data); err != nil {
			return err
		}
	}
	return nil
}

func (h *ClientHello) parseExtension(typ uint16, data []byte) error {
	r := newReader(data)
	switch typ {
	case extServerName:
		name, err := parseServerName(data)
		if err != nil {
			return err
		}
		h.ServerName = name
		return nil
	case extSupportedGroups:
		h.groups = u16List(r.vec16())
		if h.groups == nil {
			return fmt.Errorf("%w: supported_groups", ErrMalformed)
		}
	case extECPointFormats:
		h.pointFormats, h.hasPointFormats = r.vec8(), true
		if len(h.pointFormats) == 0 {
			return fmt.Errorf("%w: ec_point_formats", ErrMalformed)
		}
	case extSignatureAlgorithms:
		h.sigAlgs = u16List(r.vec16())
		if h.sigAlgs == nil {
			return fmt.Errorf("%w: signature_algorithms", ErrMalformed)
		}
	case extALPN:
		list, err := parseALPN(r.vec16())
		if err != nil {
			return err
		}
		h.ALPN = list
	case extExtendedMaster:
		h.ems = true
	case extSessionTicket:
		h.ticketExt = true
		r.take(len(data))
	case extSupportedVersions:
		h.versions = u16List(r.vec8())
		if h.versions == nil {
			return fmt.Errorf("%w: supported_versions", ErrMalformed)
		}
	case extRenegotiationInfo:
		h.renegExt, h.renegInfo = true, r.vec8()
	case extKeyShare, extPreSharedKey, extEarlyData, extPSKModes:
		h.tls13Extensions = true
		r.take(len(data))
	default:
		r.take(len(data)) // ignored extension
	}
	if !r.done() {
		return fmt.Errorf("%w: extension %d length", ErrMalformed, typ)
	}
	return nil
}

// u16List decodes a non-empty list of uint16 values, or returns nil.
func u16List(b []byte) []uint16 {
	if len(b) == 0 || len(b)%2 != 0 {
		return nil
	}
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return out
}

// parseServerName decodes the ServerNameList of RFC 6066 section 3: one
// host_name (other name types skipped), printable ASCII without a trailing
// dot, returned lowercased.
func parseServerName(data []byte) (string, error) {
	r := newReader(data)
	list := newReader(r.vec16())
	if !r.done() || len(list.b) == 0 {
		return "", fmt.Errorf("%w: server_name list", ErrMalformed)
	}
	var name []byte
	for len(list.b) > 0 {
		kind := list.u8()
		v := list.vec16()
		if !list.ok {
			return "", fmt.Errorf("%w: server_name entry", ErrMalformed)
		}
		if kind != 0 {
			continue
		}
		if name != nil || len(v) == 0 || len(v) > 255 || v[len(v)-1] == '.' {
			return "", fmt.Errorf("%w: host_name", ErrMalformed)
		}
		name = v
	}
	out := make([]byte, len(name))
	for i, c := range name {
		switch {
		case c <= ' ' || c >= 0x7f:
			return "", fmt.Errorf("%w: byte 0x%02x in host_name", ErrMalformed, c)
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out), nil
}

// parseALPN decodes a non-empty ProtocolNameList (RFC 7301 section 3.1).
func parseALPN(b []byte) ([]string, error) {
	r := newReader(b)
	var out []string
	for len(r.b) > 0 {
		p := r.vec8()
		if !r.ok || len(p) == 0 {
			return nil, fmt.Errorf("%w: ALPN protocol name", ErrMalformed)
		}
		out = append(out, string(p))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty ALPN list", ErrMalformed)
	}
	return out, nil
}

// OffersTLS13 reports whether the client offers TLS 1.3 (or a TLS 1.3
// draft) in supported_versions, or sends any TLS 1.3-only extension. Such
// a client is never answered by this package (RFC 8446 section 4.1.3:
// its downgrade protection must stay with a TLS 1.3 server).
func (h *ClientHello) OffersTLS13() bool {
	for _, v := range h.versions {
		if v == 0x0304 || v>>8 == 0x7f {
			return true
		}
	}
	return h.tls13Extensions
}

// offers12 reports whether TLS 1.2 is the client's highest version: a
// legacy_version of 3.3 and, with supported_versions, 3.3 listed.
func (h *ClientHello) offers12() bool {
	if h.version != version12 {
		return false
	}
	if h.versions == nil {
		return true
	}
	for _, v := range h.versions {
		if v == version12 {
			return true
		}
	}
	return false
}

// Ticketless12 reports whether h is the kind of hello this package serves:
// TLS 1.2 as the highest version, no TLS 1.3 offer, no session_ticket
// extension (the client resumes by session ID only), no TLS_FALLBACK_SCSV
// (a fallback retry is crypto/tls's to judge, RFC 7507) and null
// compression offered.
func (h *ClientHello) Ticketless12() bool {
	return h.offers12() && !h.OffersTLS13() && !h.ticketExt && !h.fallbackSCSV && h.nullCompression
}

// HasTicketExtension reports whether the client sent session_ticket.
func (h *ClientHello) HasTicketExtension() bool { return h.ticketExt }

// HasEMS reports whether the client offered Extended Master Secret.
func (h *ClientHello) HasEMS() bool { return h.ems }
