// Package h2 is meshgate's HTTP/2 server (RFC 9113, HPACK RFC 7541): the
// connection state machine, flow control, SETTINGS, PING, GOAWAY,
// RST_STREAM, stream limits and request validation are its own; framing
// and HPACK come from golang.org/x/net/http2's Framer and hpack.
//
// # Goroutines and hand-offs
//
// ServeConn runs on the caller's goroutine (the one that accepted the
// connection and did its TLS handshake) and reads frames. A complete
// request head becomes a stream that is handed to a pooled worker
// goroutine of the Server, which runs the exchange.Handler (the proxy's
// upstream round trip blocks, so it cannot run on the reader); workers are
// reused, so a stream costs no goroutine creation and no stack growth.
// Nothing else runs per connection or per stream: there is no writer
// goroutine. Frames are appended to the connection's output buffer under
// its mutex by whichever goroutine produces them; the first goroutine that
// wants the buffer on the wire while no write is in flight writes it, and
// keeps writing what others appended meanwhile, so frames of concurrent
// streams leave in one write (one TLS record) under load. The reader
// flushes its own control frames (SETTINGS and PING acknowledgements,
// WINDOW_UPDATE, RST_STREAM) before it blocks on the next read.
//
// # What it refuses
//
//   - Protocol violations end the connection with GOAWAY and the RFC's
//     error code (PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR,
//     COMPRESSION_ERROR, STREAM_CLOSED), or reset the one stream when the
//     RFC makes it a stream error; malformed requests (RFC 9113 §8.1.1,
//     §8.2, §8.3) are reset with PROTOCOL_ERROR.
//   - CONNECT (plain and extended, RFC 8441; SETTINGS_ENABLE_CONNECT_PROTOCOL
//     is not offered) is answered 501; server push is never used.
//   - A request head larger than MaxHeaderBytes is answered 431; the
//     Framer bounds the HPACK and CONTINUATION input it reads for it
//     (CVE-2024-27316-style floods end the connection).
//   - Streams beyond MaxConcurrentStreams are refused (REFUSED_STREAM),
//     counting streams whose handler still runs after the client reset
//     them, and a client that keeps resetting streams it just opened
//     (rapid reset, CVE-2023-44487) or floods PING or SETTINGS frames it does not
//     read the answers of, or empty DATA frames, gets GOAWAY with ENHANCE_YOUR_CALM.
//
// Every refusal is counted through Config.CountError.
package h2
