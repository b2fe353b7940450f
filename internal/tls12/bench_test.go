package tls12

import (
	"net"
	"testing"
)

// BenchmarkServerHandshake runs full and abbreviated handshakes over
// net.Pipe against the scripted client (ECDSA P-256 and RSA-2048 keys,
// X25519, AES-128-GCM). ns/op and allocs/op cover both sides; the client
// does the same ECDHE and record work as the server minus the signature,
// so a full handshake's cost is dominated by the server's signature.
func BenchmarkServerHandshake(b *testing.B) {
	for _, key := range []string{"ecdsa", "rsa"} {
		cache := newMemCache()
		cfg := &Config{Certificate: sharedCert(b, key), Sessions: cache, NextProtos: []string{"http/1.1"}}
		var first *testClient
		handshake := func(b *testing.B, resume bool) {
			cc, sc := net.Pipe()
			defer cc.Close()
			done := make(chan error, 1)
			go func() {
				s := Server(sc, cfg)
				done <- s.Handshake()
				sc.Close()
			}()
			tc := newTestClient(cc)
			tc.sni = "a.example.test"
			if resume {
				tc.sessionID, tc.sessionSecret = first.serverSessionID, first.masterSecret
			}
			if err := tc.handshake(); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			if resume != tc.resumed {
				b.Fatalf("resumed %v", tc.resumed)
			}
			if first == nil {
				first = tc
			}
		}
		b.Run(key+"/full", func(b *testing.B) {
			for b.Loop() {
				handshake(b, false)
			}
		})
		b.Run(key+"/resumed", func(b *testing.B) {
			if first == nil {
				handshake(b, false) // the session to resume
			}
			for b.Loop() {
				handshake(b, true)
			}
		})
	}
}
