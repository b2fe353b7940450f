package proxy

import (
	"net/netip"
	"strings"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/http1"
)

// Kinds of request fields, for what the proxy forwards.
const (
	fieldForward = iota // forwarded as received
	fieldXFF            // X-Forwarded-For: kept only from trusted forwarders
	fieldDrop           // set by the proxy itself, or refused: never forwarded
)

// fieldKind classifies a client request field: the ones the proxy sets
// itself, and names with underscores unless UnderscoresInHeaders. Both
// upstream paths (appendRequestHead, httpRequest) decide through it.
func (h *Handler) fieldKind(name string) int {
	if k := forwardedKind(name); k != fieldForward {
		return k
	}
	if !h.cfg.UnderscoresInHeaders && strings.IndexByte(name, '_') >= 0 {
		return fieldDrop
	}
	return fieldForward
}

// forwardedKind classifies the request fields the proxy sets itself.
func forwardedKind(name string) int {
	switch len(name) {
	case 9:
		if exchange.EqualFold(name, "Forwarded") || exchange.EqualFold(name, "X-Real-Ip") {
			return fieldDrop
		}
	case 15:
		if exchange.EqualFold(name, "X-Forwarded-For") {
			return fieldXFF
		}
	case 16:
		if exchange.EqualFold(name, "X-Forwarded-Host") {
			return fieldDrop
		}
	case 17:
		if exchange.EqualFold(name, "X-Forwarded-Proto") {
			return fieldDrop
		}
	}
	return fieldForward
}

// appendRequestHead appends the HTTP/1.1 request head sent upstream: the
// request line in origin form, Host, the client's end-to-end fields in
// order (without the ones fieldKind drops), the X-Forwarded-* fields and
// X-Real-Ip, and the framing. The
// client's X-Forwarded-For is kept (the client address appended) only
// from a trusted forwarder; its Forwarded, X-Forwarded-Host/-Proto and
// X-Real-Ip are always replaced by what meshgate saw, as net/http's
// ReverseProxy with Rewrite does.
func (x *exchangeState) appendRequestHead(b []byte) []byte {
	r := x.r
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.Target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for _, f := range r.Header.Fields() {
		if x.h.fieldKind(f.Name) == fieldForward {
			b = http1.AppendField(b, f.Name, f.Value)
		}
	}
	b = append(b, "X-Forwarded-For: "...)
	if x.h.trusted(r.RemoteAddr) {
		for _, f := range r.Header.Fields() {
			if f.Value != "" && forwardedKind(f.Name) == fieldXFF {
				b = append(b, f.Value...)
				b = append(b, ", "...)
			}
		}
	}
	b = append(b, r.ClientIP...)
	b = append(b, "\r\n"...)
	b = http1.AppendField(b, "X-Forwarded-Proto", r.Scheme)
	b = http1.AppendField(b, "X-Forwarded-Host", r.Host)
	b = http1.AppendField(b, "X-Real-Ip", r.ClientIP)
	if r.EarlyData {
		// Received in 0-RTT, maybe a replay: the backend may answer 425
		// itself (RFC 8470 §5.1).
		b = append(b, "Early-Data: 1\r\n"...)
	}
	if r.TrailersOK {
		b = append(b, "Te: trailers\r\n"...)
	}
	if r.Upgrade != "" {
		b = append(b, "Connection: Upgrade\r\n"...)
		b = http1.AppendField(b, "Upgrade", r.Upgrade)
	}
	switch {
	case r.Body == nil:
		// net/http's Transport announces an empty body for methods that
		// normally carry one.
		if r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH" {
			b = append(b, "Content-Length: 0\r\n"...)
		}
	case r.ContentLength >= 0:
		if r.ExpectContinue {
			b = append(b, "Expect: 100-continue\r\n"...)
		}
		b = append(b, "Content-Length: "...)
		b = appendInt(b, r.ContentLength)
		b = append(b, "\r\n"...)
	default:
		if r.ExpectContinue {
			b = append(b, "Expect: 100-continue\r\n"...)
		}
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(b, "\r\n"...)
}

// trusted reports whether a client address is a trusted forwarder.
func (h *Handler) trusted(a netip.AddrPort) bool {
	if len(h.cfg.TrustedForwarders) == 0 {
		return false
	}
	ip := a.Addr().Unmap()
	for _, p := range h.cfg.TrustedForwarders {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func appendInt(b []byte, n int64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}
