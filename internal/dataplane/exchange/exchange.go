// Package exchange is the front-end-neutral model of one proxied HTTP
// exchange: a Request as every client protocol presents it and the
// ResponseWriter a handler answers through. meshgate's three front ends
// produce it — its own HTTP/1.1 and HTTP/2 engines (internal/dataplane/http1,
// internal/dataplane/h2) directly, HTTP/3 (quic-go) through proxy.Handler's
// net/http adapter — and proxy.Handler consumes it, so that
// routing, per-route features and the upstream round trip are written once
// for every protocol.
//
// # What a Request holds
//
// A Request carries only end-to-end semantics: method, scheme, authority
// (Host), the request target in origin form, the percent-decoded path for
// matching, and the end-to-end header fields. The front end has already
// validated the message, applied its framing (Content-Length, chunked,
// HTTP/2 DATA frames) and removed every connection-specific field (Host,
// Connection and the fields it names, Keep-Alive, Proxy-Connection, TE,
// Transfer-Encoding, Content-Length, Upgrade, Expect, Proxy-Authorization,
// Proxy-Authenticate); what they meant is in typed fields (ContentLength,
// Upgrade, ExpectContinue, TrailersOK, Close). A handler forwarding the
// request adds its own framing and X-Forwarded-* fields.
//
// # Where per-route features plug in
//
// proxy.Handler runs every request through one pipeline, whatever the
// front end (see its ServeExchange): route lookup on the routing table →
// request filters (internal/dataplane/filter: header modifiers, redirects,
// URL rewrites, mirrors; later deny lists and rate limits — functions of
// *Request that may rewrite it or answer it) → backend and endpoint choice
// (weights; later sticky cookies) → the upstream round trip → response
// filters on the response head before it reaches the ResponseWriter.
// Features read and rewrite Request fields and Header values; they never
// see a protocol's wire format.
//
// # Lifetimes
//
// Front ends reuse Requests, Headers and buffers from one exchange to the
// next on the same connection or stream: nothing may be kept after
// ServeExchange returns except strings taken out of them, which stay valid.
// One goroutine serves an exchange; a Request, its Body and its
// ResponseWriter are not safe for concurrent use unless stated.
package exchange

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"time"
)

// Proto is the client protocol of an exchange.
type Proto uint8

// Protocols.
const (
	HTTP10 Proto = 1 + iota
	HTTP11
	HTTP2
	HTTP3
)

// String returns the protocol as in a request line ("HTTP/1.1"), or
// "HTTP/2.0" / "HTTP/3.0" as net/http names them.
func (p Proto) String() string {
	switch p {
	case HTTP10:
		return "HTTP/1.0"
	case HTTP11:
		return "HTTP/1.1"
	case HTTP2:
		return "HTTP/2.0"
	case HTTP3:
		return "HTTP/3.0"
	}
	return "HTTP/?"
}

// Request is one client request. See the package documentation for what
// front ends guarantee about it and for its lifetime.
type Request struct {
	Proto  Proto
	Method string
	// Scheme is "https" when the client connection is TLS or QUIC, else
	// "http".
	Scheme string
	// Host is the authority the client addressed: the Host field (HTTP/1.x,
	// or the authority of an absolute-form target), or :authority. It may
	// carry a port and may be empty (an HTTP/1.0 request without Host).
	Host string
	// Target is the request target to forward, in origin form ("/p?q") or
	// "*" (OPTIONS). An absolute-form HTTP/1.1 target arrives here in origin
	// form with its authority in Host.
	Target string
	// Path is Target's path, percent-decoded: what routes match on.
	Path string
	// Header holds the end-to-end fields in received order.
	Header Header

	// ContentLength is the body length, or -1 when it is not known in
	// advance (chunked, HTTP/2 or HTTP/3 without content-length). Zero with
	// a nil Body means the request has no body.
	ContentLength int64
	// Body reads the request body; nil when there is none.
	Body Body

	// Upgrade is the HTTP/1.1 Upgrade field value when Connection listed
	// "upgrade" (a WebSocket handshake, for example); "" otherwise. The
	// ResponseWriter then implements Upgrader.
	Upgrade string
	// ExpectContinue reports an HTTP/1.1 "Expect: 100-continue" whose body
	// the client withholds until it sees a 100 (Continue) interim response;
	// the front end sends none by itself.
	ExpectContinue bool
	// TrailersOK reports that the client announced "TE: trailers".
	TrailersOK bool
	// Close reports that the client connection closes after this exchange
	// (HTTP/1.x: "Connection: close", or HTTP/1.0 without keep-alive). A
	// handler sets it to have the front end close the connection after the
	// response (for example after answering without reading a body).
	// HTTP/2 and HTTP/3 ignore it.
	Close bool

	// ServerName is the SNI of the TLS (or QUIC) connection the request
	// came on, "" when the client sent none or the connection is plain
	// HTTP. The certificate and TLS policy of the connection were chosen
	// by it; the pipeline answers 421 (Misdirected Request) to a request
	// whose Host has another TLS policy. Front ends that terminate TLS must
	// set it: an empty ServerName is the default certificate's.
	ServerName string
	// EarlyData reports a request received in TLS 1.3 / QUIC 0-RTT early
	// data, before the handshake completed (it may be a replay). The
	// pipeline forwards it with "Early-Data: 1" (RFC 8470 §5.1) or answers
	// 425 (Too Early) when the routed host's policy forbids 0-RTT.
	EarlyData bool

	// Frontend is the Gateway frontend address and port the connection
	// was accepted on (routing.Table.Frontends: the request is routed by
	// Table.For(Frontend)); the zero AddrPort for the replica's own
	// listeners.
	Frontend netip.AddrPort

	// RemoteAddr is the client address (the one a PROXY protocol header
	// carried, when there was one); ClientIP is its address as text.
	RemoteAddr netip.AddrPort
	ClientIP   string
	// Context is done when the client stream is gone (HTTP/2 and HTTP/3
	// stream resets, connection loss) or the server closes it; nil when the
	// front end cannot tell before writing (HTTP/1.x, whose handler learns
	// it from a failed Read or Write).
	Context context.Context
	// Start is when the request head was complete.
	Start time.Time
}

// Body is a request body being received.
type Body interface {
	// Read reads body bytes with the framing removed; io.EOF ends the
	// body. Failures wrap ErrBodyTimeout (the client stalled), ErrBadBody
	// (malformed framing: the connection cannot be reused) or report the
	// client connection's error.
	Read(p []byte) (int, error)
	// SetReadTimeout bounds each later Read: when no byte arrives within d
	// the Read fails with ErrBodyTimeout. Zero removes the bound.
	SetReadTimeout(d time.Duration)
	// Trailer returns the trailer fields once Read has returned io.EOF;
	// nil when there were none.
	Trailer() *Header
}

// Errors of Body.Read.
var (
	ErrBodyTimeout = errors.New("exchange: client stalled sending the request body")
	ErrBadBody     = errors.New("exchange: malformed request body framing")
)

// ResponseWriter sends the response of one exchange to the client.
type ResponseWriter interface {
	// WriteHeader sends a response head. A status from 100 to 199 other
	// than 101 is an interim response (sent to HTTP/1.1 and newer clients,
	// dropped for HTTP/1.0), any number of them before the final one; the
	// final head is written once. h must hold end-to-end fields only; the
	// front end adds Date when h has none, and its own framing:
	// contentLength is the body length, or -1 when it is not known
	// (HTTP/1.1 then chunks it; HTTP/1.0 closes the connection after it).
	// For HEAD requests and 204/304 responses no body follows; a known
	// contentLength is still announced. h is not kept after the call.
	WriteHeader(status int, h *Header, contentLength int64) error
	// Write sends body bytes after the final head. Bytes may be buffered
	// until Flush, Finish or a full buffer.
	Write(p []byte) (int, error)
	// Flush sends buffered bytes to the client now.
	Flush() error
	// Finish ends the response body and sends trailer fields (nil for
	// none) where the framing allows (chunked HTTP/1.1, HTTP/2, HTTP/3).
	// A response whose body is shorter than its contentLength cannot be
	// finished. A handler that returns without Finish after a final head
	// aborts the response: the front end closes the connection (HTTP/1.x)
	// or resets the stream, so the client cannot take a truncated body for
	// a complete one.
	Finish(trailer *Header) error
}

// Upgrader is implemented by ResponseWriters that can switch protocols
// (HTTP/1.1).
type Upgrader interface {
	// Upgrade sends a 101 (Switching Protocols) head with h (which carries
	// the Upgrade field; the front end adds "Connection: Upgrade") and
	// hands the client connection over as a Stream. Reads return the bytes
	// the client sent after its request head first. The front end closes
	// the connection once the handler returns.
	Upgrade(h *Header) (Stream, error)
}

// Stream is a client connection after a protocol switch. Read and Write
// may be used by two goroutines at once (one each); Close may be called
// from any goroutine and unblocks both.
type Stream interface {
	io.ReadWriteCloser
	// CloseWrite ends the direction towards the client (TLS close_notify
	// and a TCP half-close) and leaves reading open.
	CloseWrite() error
}

// Handler serves exchanges. ServeExchange must have written a final
// response head (or upgraded) before it returns, and must not use w or r
// afterwards. It must be safe for concurrent use.
type Handler interface {
	ServeExchange(w ResponseWriter, r *Request)
}
