package tls12

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
)

func dialTest(t *testing.T, addr string) *testClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newTestClient(c)
}

// echo sends msg as application data and expects it back.
func (tc *testClient) echo(t *testing.T, msg string) {
	t.Helper()
	if err := tc.send(recordApplicationData, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, err := tc.readApp()
	if err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

func TestResumeBySessionID(t *testing.T) {
	for _, key := range []string{"rsa", "ecdsa"} {
		t.Run(key, func(t *testing.T) {
			cache := newMemCache()
			cfg := &Config{Certificate: sharedCert(t, key), Sessions: cache, NextProtos: []string{"h2", "http/1.1"}}
			addr, results := serve(t, cfg)

			first := dialTest(t, addr)
			first.sni = "a.example.test"
			if err := first.handshake(); err != nil {
				t.Fatal(err)
			}
			first.echo(t, "full")
			if r := result(t, results); r.err != nil || r.state.DidResume {
				t.Fatalf("first: %+v %v", r.state, r.err)
			}
			if len(first.serverSessionID) != 32 || !first.serverEMS || cache.len() != 1 {
				t.Fatalf("session id %x, ems %v, cached %d", first.serverSessionID, first.serverEMS, cache.len())
			}
			for i := range 3 {
				again := dialTest(t, addr)
				again.sni, again.sessionID, again.alpn = "a.example.test", first.serverSessionID, []string{"http/1.1"}
				again.sessionSecret = first.masterSecret
				if err := again.handshake(); err != nil {
					t.Fatal(err)
				}
				if !again.resumed || !bytes.Equal(again.masterSecret, first.masterSecret) || again.serverALPN != "http/1.1" {
					t.Fatalf("round %d: resumed %v alpn %q", i, again.resumed, again.serverALPN)
				}
				again.echo(t, "resumed")
				if r := result(t, results); r.err != nil || !r.state.DidResume || r.state.NegotiatedProtocol != "http/1.1" {
					t.Fatalf("server: %+v %v", r.state, r.err)
				}
			}
			if cache.len() != 1 {
				t.Fatalf("resumption stored a session: %d", cache.len())
			}
		})
	}
}

// TestFullHandshakeInsteadOfResumption: every reason not to resume gives a
// full handshake with a fresh id, never an error.
func TestFullHandshakeInsteadOfResumption(t *testing.T) {
	cache := newMemCache()
	cfg := &Config{Certificate: sharedCert(t, "ecdsa"), Sessions: cache}
	addr, results := serve(t, cfg)
	first := dialTest(t, addr)
	first.sni = "a.example.test"
	if err := first.handshake(); err != nil {
		t.Fatal(err)
	}
	result(t, results)
	id := first.serverSessionID

	cases := map[string]func(tc *testClient){
		"unknown id":        func(tc *testClient) { tc.sessionID = bytes.Repeat([]byte{7}, 32) },
		"other server name": func(tc *testClient) { tc.sni = "b.example.test" },
		"suite not offered": func(tc *testClient) { tc.suites = []uint16{TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256} },
		"no EMS on resume":  func(tc *testClient) { tc.noEMS = true },
		"revoked":           func(tc *testClient) { cache.revoke(id) },
	}
	for _, name := range []string{"unknown id", "other server name", "suite not offered", "no EMS on resume", "revoked"} {
		t.Run(name, func(t *testing.T) {
			tc := dialTest(t, addr)
			tc.sni, tc.sessionID = "a.example.test", id
			cases[name](tc)
			if err := tc.handshake(); err != nil {
				t.Fatal(err)
			}
			if tc.resumed {
				t.Fatal("resumed")
			}
			tc.echo(t, "ok")
			if r := result(t, results); r.err != nil || r.state.DidResume {
				t.Fatalf("server: %+v %v", r.state, r.err)
			}
		})
	}
}

// TestNoEMSNoSession: a client without Extended Master Secret gets a full
// handshake, an empty session id and nothing cached (RFC 7627).
func TestNoEMSNoSession(t *testing.T) {
	cache := newMemCache()
	addr, results := serve(t, &Config{Certificate: sharedCert(t, "rsa"), Sessions: cache})
	tc := dialTest(t, addr)
	tc.noEMS = true
	if err := tc.handshake(); err != nil {
		t.Fatal(err)
	}
	tc.echo(t, "legacy")
	if r := result(t, results); r.err != nil {
		t.Fatal(r.err)
	}
	if len(tc.serverSessionID) != 0 || tc.serverEMS || cache.len() != 0 || cache.puts != 0 {
		t.Fatalf("id %x ems %v cached %d", tc.serverSessionID, tc.serverEMS, cache.len())
	}
}

func alertOf(err error) (uint8, bool) {
	var ae *alertError
	if errors.As(err, &ae) {
		return ae.desc, true
	}
	return 0, false
}

func TestTamperedFinished(t *testing.T) {
	cache := newMemCache()
	addr, results := serve(t, &Config{Certificate: sharedCert(t, "ecdsa"), Sessions: cache})
	tc := dialTest(t, addr)
	tc.badFinished = true
	err := tc.handshake()
	if d, ok := alertOf(err); !ok || d != alertDecryptError {
		t.Fatalf("client got %v, want decrypt_error alert", err)
	}
	r := result(t, results)
	if d, _ := alertOf(r.err); d != alertDecryptError {
		t.Fatalf("server: %v", r.err)
	}
	if cache.len() != 0 {
		t.Fatal("failed handshake cached a session")
	}

	// The same on an abbreviated handshake.
	ok := dialTest(t, addr)
	if err := ok.handshake(); err != nil {
		t.Fatal(err)
	}
	result(t, results)
	bad := dialTest(t, addr)
	bad.sessionID, bad.badFinished, bad.sessionSecret = ok.serverSessionID, true, ok.masterSecret
	if err := bad.handshake(); err != nil {
		t.Fatal(err) // the client's flight is sent; the server answers with an alert
	}
	if !bad.resumed {
		t.Fatal("not resumed")
	}
	if r := result(t, results); r.err == nil {
		t.Fatal("server accepted a tampered Finished on resumption")
	} else if d, _ := alertOf(r.err); d != alertDecryptError {
		t.Fatalf("server: %v", r.err)
	}
	if _, err := bad.readApp(); err == nil {
		t.Fatal("client got data after a bad Finished")
	} else if d, _ := alertOf(err); d != alertDecryptError {
		t.Fatalf("client: %v", err)
	}
}

func TestWrongRecordMAC(t *testing.T) {
	addr, results := serve(t, &Config{Certificate: sharedCert(t, "ecdsa")})
	for _, s := range []uint16{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256} {
		tc := dialTest(t, addr)
		tc.suites = []uint16{s}
		if err := tc.handshake(); err != nil {
			t.Fatal(err)
		}
		r := result(t, results)
		rec := appendRecords(nil, tc.out, recordApplicationData, []byte("GET / HTTP/1.1\r\n"))
		rec[len(rec)-1] ^= 0x80 // flip a tag bit
		if _, err := tc.conn.Write(rec); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.readApp(); err == nil {
			t.Fatal("server echoed a forged record")
		} else if d, _ := alertOf(err); d != alertBadRecordMAC {
			t.Fatalf("%s: client got %v, want bad_record_mac", tls.CipherSuiteName(s), err)
		}
		_ = r
	}
}

// TestTLS13ClientNeverAnswered: a hello offering TLS 1.3 gets no
// ServerHello from this path, only a protocol_version alert.
func TestTLS13ClientNeverAnswered(t *testing.T) {
	for name, mutate := range map[string]func(*testClient){
		"supported_versions": func(tc *testClient) { tc.versions = []uint16{0x0304, 0x0303} },
		"key_share only":     func(tc *testClient) { tc.extraExt = []byte{0, 51, 0, 2, 0, 0} },
	} {
		t.Run(name, func(t *testing.T) {
			addr, results := serve(t, &Config{Certificate: sharedCert(t, "ecdsa"), Sessions: newMemCache()})
			tc := dialTest(t, addr)
			mutate(tc)
			err := tc.handshake()
			if d, ok := alertOf(err); !ok || d != alertProtocolVersion {
				t.Fatalf("client got %v, want a protocol_version alert and no ServerHello", err)
			}
			if r := result(t, results); r.err == nil {
				t.Fatal("server completed a handshake")
			}
		})
	}
}

func TestRenegotiationRefused(t *testing.T) {
	addr, results := serve(t, &Config{Certificate: sharedCert(t, "ecdsa")})
	tc := dialTest(t, addr)
	if err := tc.handshake(); err != nil {
		t.Fatal(err)
	}
	r := result(t, results)
	tc.echo(t, "before")
	if err := tc.send(recordHandshake, tc.helloMessage()); err != nil {
		t.Fatal(err)
	}
	_, err := tc.readApp()
	if d, ok := alertOf(err); !ok || d != alertNoRenegotiation {
		t.Fatalf("client got %v, want no_renegotiation", err)
	}
	_ = r
}

func TestRenegotiationInfoNotEmpty(t *testing.T) {
	addr, _ := serve(t, &Config{Certificate: sharedCert(t, "ecdsa")})
	tc := dialTest(t, addr)
	tc.extraExt = []byte{0xff, 0x01, 0, 2, 1, 9}
	if d, _ := alertOf(tc.handshake()); d != alertHandshakeFailure {
		t.Fatal("non-empty renegotiation_info accepted on an initial handshake")
	}
}

func TestDowngradeSentinel(t *testing.T) {
	for _, tls13 := range []bool{false, true} {
		addr, _ := serve(t, &Config{Certificate: sharedCert(t, "ecdsa"), ServesTLS13: tls13})
		tc := dialTest(t, addr)
		if err := tc.handshake(); err != nil {
			t.Fatal(err)
		}
		if got := bytes.HasSuffix(tc.serverRandom, downgradeSentinel); got != tls13 {
			t.Fatalf("ServesTLS13 %v: sentinel %v", tls13, got)
		}
	}
}

// TestFragmentedHello: handshake messages split over many records are
// reassembled.
func TestFragmentedHello(t *testing.T) {
	addr, results := serve(t, &Config{Certificate: sharedCert(t, "ecdsa")})
	tc := dialTest(t, addr)
	tc.fragment = 7
	if err := tc.handshake(); err != nil {
		t.Fatal(err)
	}
	if r := result(t, results); r.err != nil {
		t.Fatal(r.err)
	}
	tc.echo(t, "ok")
}

func TestNoCommonSuiteIsHandshakeFailure(t *testing.T) {
	addr, _ := serve(t, &Config{Certificate: sharedCert(t, "rsa")})
	tc := dialTest(t, addr)
	tc.suites = []uint16{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256} // needs an ECDSA key
	if d, _ := alertOf(tc.handshake()); d != alertHandshakeFailure {
		t.Fatal("want handshake_failure")
	}
}

// TestECDSACurveMustBeOffered: a client whose supported_groups leave out
// the ECDSA key's curve cannot be served (RFC 8422 section 5.1.1).
func TestECDSACurveMustBeOffered(t *testing.T) {
	cfg := &Config{Certificate: sharedCert(t, "ecdsa")}
	tc := newTestClient(nil)
	tc.groups = []uint16{groupX25519}
	h, err := ParseClientHello(tc.helloMessage())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CanServe(h) {
		t.Fatal("CanServe with the P-256 key's curve not offered")
	}
	tc.groups = []uint16{groupX25519, groupP256}
	if h, _ = ParseClientHello(tc.helloMessage()); !cfg.CanServe(h) {
		t.Fatal("cannot serve a fitting hello")
	}
}

// VerifyConnection sees every successful handshake, full and resumed, and
// its error fails the handshake.
func TestVerifyConnection(t *testing.T) {
	var mu sync.Mutex
	var seen []bool // DidResume of each call
	refuse := false
	cfg := &Config{Certificate: sharedCert(t, "ecdsa"), Sessions: newMemCache(),
		VerifyConnection: func(cs tls.ConnectionState) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, cs.DidResume)
			if refuse {
				return errors.New("refused")
			}
			return nil
		}}
	addr, results := serve(t, cfg)
	first := dialTest(t, addr)
	first.sni = "a.example.test"
	if err := first.handshake(); err != nil {
		t.Fatal(err)
	}
	result(t, results)
	again := dialTest(t, addr)
	again.sni, again.sessionID, again.sessionSecret = "a.example.test", first.serverSessionID, first.masterSecret
	if err := again.handshake(); err != nil {
		t.Fatal(err)
	}
	result(t, results)
	mu.Lock()
	if len(seen) != 2 || seen[0] || !seen[1] {
		t.Fatalf("VerifyConnection saw %v, want [full resumed]", seen)
	}
	refuse = true
	mu.Unlock()
	third := dialTest(t, addr)
	third.sni = "a.example.test"
	_ = third.handshake()
	if r := result(t, results); r.err == nil {
		t.Fatal("handshake succeeded although VerifyConnection failed it")
	}
}
