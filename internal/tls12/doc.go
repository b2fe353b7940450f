// Package tls12 is the server side of TLS 1.2 for clients that resume by
// session ID only (no session tickets): written from RFC 5246 (TLS 1.2),
// RFC 8422 (ECDHE, ECDSA), RFC 5288 (AES-GCM), RFC 7905
// (ChaCha20-Poly1305), RFC 7627 (Extended Master Secret), RFC 5746
// (renegotiation_info), RFC 6066 (server_name) and RFC 7301 (ALPN), on Go's
// constant-time primitives (crypto/ecdh, crypto/ecdsa, crypto/rsa,
// crypto/ed25519, crypto/cipher, x/crypto/chacha20poly1305, crypto/hmac).
//
// Go's crypto/tls never resumes a session by ID, so a client that cannot
// carry a ticket pays a full handshake on every connection. This package
// closes that gap and nothing more; everything else stays on crypto/tls.
//
// Supported: ECDHE_ECDSA and ECDHE_RSA key exchange with AES-128-GCM,
// AES-256-GCM and ChaCha20-Poly1305; groups X25519 and P-256; RSA (PKCS #1
// v1.5 and PSS), ECDSA and Ed25519 signatures without SHA-1; full and
// abbreviated handshakes; session IDs issued and resumed through a
// SessionCache, only for sessions with Extended Master Secret.
//
// Refused: a ClientHello that offers TLS 1.3 (its downgrade protection,
// RFC 8446 section 4.1.3, belongs to a TLS 1.3 server; protocol_version
// alert), non-null compression, a non-empty renegotiation_info on an
// initial handshake (handshake_failure), renegotiation (no_renegotiation,
// then the connection ends), client certificates (never requested), CBC
// suites, static RSA key exchange, SHA-1 signatures. The server routes to
// this package only hellos for which ClientHello.Ticketless12 and
// Config.CanServe hold, so the refusals are defence in depth.
//
// The result of Server is a net.Conn whose ConnectionState method returns
// a crypto/tls ConnectionState, which net/http (HTTP/1.1) and
// x/net/http2 use to fill Request.TLS.
package tls12
