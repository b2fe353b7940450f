package tls12

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"testing"
)

// TestGoClientFullHandshakes drives every suite, group and key kind with
// crypto/tls as the client (TLS 1.2 only, no tickets), an independent
// implementation of the same RFCs: key schedule, signatures, record
// protection and ALPN all have to agree.
func TestGoClientFullHandshakes(t *testing.T) {
	type tc struct {
		key   string
		suite uint16
		group tls.CurveID
	}
	var cases []tc
	for _, s := range suites {
		keys := []string{"rsa"}
		if s.ecdsa {
			keys = []string{"ecdsa", "ed25519"}
		}
		for _, k := range keys {
			for _, g := range []tls.CurveID{tls.X25519, tls.CurveP256} {
				cases = append(cases, tc{k, s.id, g})
			}
		}
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s/%s", c.key, tls.CipherSuiteName(c.suite), c.group), func(t *testing.T) {
			cert := sharedCert(t, c.key)
			addr, results := serve(t, &Config{Certificate: cert, NextProtos: []string{"h2", "http/1.1"}, Sessions: newMemCache()})
			curves := []tls.CurveID{c.group}
			if c.key == "ecdsa" && c.group != tls.CurveP256 {
				curves = append(curves, tls.CurveP256) // the key's own curve must be offered
			}
			pool := x509.NewCertPool()
			pool.AddCert(cert.Leaf)
			conn, err := tls.Dial("tcp", addr, &tls.Config{
				ServerName: "a.example.test", RootCAs: pool,
				MaxVersion: tls.VersionTLS12, SessionTicketsDisabled: true,
				CipherSuites: []uint16{c.suite}, CurvePreferences: curves,
				NextProtos: []string{"http/1.1", "h2"},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cs := conn.ConnectionState()
			if cs.CipherSuite != c.suite || cs.NegotiatedProtocol != "h2" || cs.Version != tls.VersionTLS12 {
				t.Fatalf("client state: suite %x alpn %q version %x", cs.CipherSuite, cs.NegotiatedProtocol, cs.Version)
			}
			r := result(t, results)
			if r.err != nil || r.state.CipherSuite != c.suite || r.state.ServerName != "a.example.test" || r.state.DidResume || r.state.CurveID != c.group {
				t.Fatalf("server: %+v, %v", r.state, r.err)
			}
			// Larger than one record both ways.
			msg := bytes.Repeat([]byte("meshgate-"), 5000)
			go conn.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo: %v", err)
			}
		})
	}
}
