// Package http1 is meshgate's HTTP/1.1: the message syntax, written from
// RFC 9112 and RFC 9110 (request and response head parsing, chunked
// decoding and encoding, pooled connection buffers), and the server engine
// that serves client connections with it (Server).
//
// # The engine
//
// Server.ServeConn serves one connection on the caller's goroutine — the
// one that accepted it and ran its TLS handshake — from the first request
// to the last: read a head, parse it, hand the request to an
// exchange.Handler (the proxy, which makes its upstream round trip on the
// same goroutine), write the response, loop. No goroutine is started per
// connection or per request (a protocol upgrade adds one, for the second
// direction of its tunnel). Between requests a connection blocks in a read
// of a small array of its own and holds no pooled buffer; a request head
// is read into a pooled buffer (grown up to MaxHeaderBytes) and copied
// into one string, the request's only allocation; the response head and a
// small body leave in one write.
//
// It answers what it cannot pass on by itself: the refusals listed below,
// 408 for a head not received within ReadHeaderTimeout, 431 beyond
// MaxHeaderBytes. Request bodies are framed by the engine (Content-Length
// or chunked, trailers included) and read by the handler; an unread body
// up to 256 KiB is discarded after the response to keep the connection, a
// longer one closes it after a lingering half-close so the client still
// reads the answer. Shutdown closes idle connections at once and lets the
// others finish their exchange with "Connection: close".
//
// # Strictness
//
// A proxy forwards what it parsed to a backend that parses it again;
// wherever the two could disagree on where a message ends, what its target
// is or which fields it carries, a request can be smuggled past the proxy
// (RFC 9112 §11.2). So the parser refuses every such ambiguity instead of
// resolving it, and never repairs a message. Refused (with the status a
// server answers):
//
//   - bare LF and bare CR anywhere in a head or chunk line, an empty line
//     before the request line (400);
//   - obs-fold, whitespace before a field's colon, non-token field names,
//     NUL / CR / LF / other controls in field values (400);
//   - Content-Length that is not 1*DIGIT up to 2^63-1, or repeated even
//     with equal values (400);
//   - Transfer-Encoding together with Content-Length, in HTTP/1.0, or
//     other than one final "chunked" (400; 501 when chunked is final but
//     other codings precede it);
//   - "Content_Length" and "Transfer_Encoding" field names, which
//     CGI-style backends read as the real ones (400);
//   - a Trailer field announcing Transfer-Encoding, Content-Length or
//     Trailer (400);
//   - chunk sizes that are not 1-16 hex digits or exceed 2^63-1, any
//     whitespace between a chunk size and its first ";" or at the end of
//     the line, malformed extensions, chunk lines over MaxChunkLine, data
//     not followed by CRLF, too much framing for the data, trailer fields
//     that would not pass as header fields (400);
//   - an HTTP/1.1 request without exactly one Host, a Host that is not
//     uri-host[:port] (userinfo, percent-encoding, lists, bad ports) (400);
//   - request lines other than method SP target SP version; versions other
//     than HTTP/1.0 and HTTP/1.1 (505 for HTTP/x.y, 400 otherwise);
//   - targets with controls, spaces or "#", bad percent-escapes in the
//     path, "*" outside OPTIONS, absolute forms other than http(s)://
//     with a non-empty authority and no userinfo (400); CONNECT (405);
//   - an Expect other than 100-continue (417).
//
// # Against net/http
//
// FuzzRequest checks the parser differentially against net/http's
// http.ReadRequest on the same byte streams: every request accepted here
// is read by net/http with the same method, target, version, Host, path,
// fields, framing, body and trailers, so everything net/http refuses is
// refused here too. The reverse does not hold, on purpose. Accepted by
// net/http but refused here: bare LF line ends and obs-fold (net/textproto
// accepts both), Transfer-Encoding with Content-Length (net/http drops the
// Content-Length), repeated equal Content-Length (net/http merges them),
// Transfer-Encoding in HTTP/1.0 (net/http ignores it), field names with
// spaces, requests without Host (net/http's server refuses those too),
// whitespace at the end of a chunk line, versions HTTP/0.x and HTTP/1.2+,
// userinfo, other schemes and percent-encoded hosts in targets, "#" in
// targets, asterisk targets outside OPTIONS, CONNECT, and unsupported
// expectations (net/http's server answers those 417 as well).
//
// Leniencies kept on purpose: raw bytes 0x80-0xFF in targets and field
// values (clients send raw UTF-8; both are forwarded unchanged), a status
// line without reason phrase, and chunk extensions, which are validated
// and then dropped.
package http1
