package tls12

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Fuzz targets cover every parser of client input: the ClientHello, the
// ClientKeyExchange, the session state read back from the cache, the record
// layer (plaintext and AEAD-protected), and the handshake state machine fed
// arbitrary client bytes. Seed corpora live in testdata/fuzz/<target>.

func FuzzParseClientHello(f *testing.F) {
	tc := newTestClient(nil)
	tc.sni, tc.alpn = "A.Example.Test", []string{"h2", "http/1.1"}
	f.Add(tc.helloMessage())
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := ParseClientHello(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(h.sessionID) > 32 || len(h.random) != randomLen || strings.ToLower(h.ServerName) != h.ServerName {
			t.Fatalf("accepted invalid fields: %+v", h)
		}
		if h.Ticketless12() && h.OffersTLS13() {
			t.Fatal("a TLS 1.3 offer classified as ticketless TLS 1.2")
		}
		cfg := &Config{Certificate: sharedCert(t, "ecdsa"), NextProtos: []string{"h2"}}
		_ = cfg.CanServe(h)
	})
}

func FuzzParseClientKeyExchange(f *testing.F) {
	f.Add([]byte{typeClientKeyExchange, 0, 0, 33, 32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32})
	f.Fuzz(func(t *testing.T, msg []byte) {
		p, err := parseClientKeyExchange(msg)
		if err == nil && (len(p) == 0 || len(p) > 255 || 4+1+len(p) != len(msg)) {
			t.Fatalf("accepted point of %d bytes in %d", len(p), len(msg))
		}
	})
}

func FuzzSessionState(f *testing.F) {
	f.Add(newSessionState(suites[0], bytes.Repeat([]byte{1}, masterSecretLen), time.Unix(1e9, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := parseSessionState(b)
		if !ok {
			return
		}
		again := newSessionState(s.suite, s.masterSecret, s.created)
		if !bytes.Equal(again, b) {
			t.Fatal("state does not round-trip")
		}
	})
}

// FuzzRecordLayer reads records from arbitrary bytes, in plaintext and
// under each AEAD, and checks that sealing and opening round-trip.
func FuzzRecordLayer(f *testing.F) {
	f.Add(appendRecords(nil, nil, recordHandshake, []byte{1, 0, 0, 0}), uint8(0))
	for i, s := range suites[:] {
		cs, _ := newCipherState(s, make([]byte, s.keyLen), make([]byte, s.ivLen))
		f.Add(appendRecords(nil, cs, recordApplicationData, []byte("hello")), uint8(i+1))
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		var in, out, peer *cipherState
		if m := int(mode) % (len(suites) + 1); m > 0 {
			s := suites[m-1]
			in, _ = newCipherState(s, make([]byte, s.keyLen), make([]byte, s.ivLen))
			out, _ = newCipherState(s, make([]byte, s.keyLen), make([]byte, s.ivLen))
			peer, _ = newCipherState(s, make([]byte, s.keyLen), make([]byte, s.ivLen))
		}
		rr := recordReader{r: bytes.NewReader(data), in: in}
		for range 64 {
			_, frag, err := rr.next()
			if err != nil {
				break
			}
			if len(frag) > maxPlaintext {
				t.Fatalf("fragment of %d bytes", len(frag))
			}
		}
		// Round trip: what we seal, a reader with the same keys opens.
		sealed := appendRecords(nil, out, recordApplicationData, data)
		back := recordReader{r: bytes.NewReader(sealed), in: peer}
		var got []byte
		for {
			_, frag, err := back.next()
			if err != nil {
				if err != io.EOF {
					t.Fatalf("reading our own records: %v", err)
				}
				break
			}
			got = append(got, frag...)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("records do not round-trip")
		}
	})
}

// fuzzConn is a net.Conn reading from a byte slice and discarding writes.
type fuzzConn struct {
	r *bytes.Reader
	net.Conn
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1} }

// FuzzServerHandshake feeds arbitrary client bytes to the server state
// machine: it must end (the input ends) with an error and never panic.
func FuzzServerHandshake(f *testing.F) {
	tc := newTestClient(nil)
	hello := tc.helloMessage()
	f.Add(appendRecords(nil, nil, recordHandshake, hello))
	tc.sessionID = bytes.Repeat([]byte{9}, 32)
	f.Add(appendRecords(appendRecords(nil, nil, recordHandshake, tc.helloMessage()), nil, recordChangeCipherSpec, []byte{1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		cache := newMemCache()
		cache.Put(bytes.Repeat([]byte{9}, 32), "", newSessionState(suites[0], make([]byte, masterSecretLen), time.Now()))
		c := Server(&fuzzConn{r: bytes.NewReader(data)}, &Config{Certificate: sharedCert(t, "ecdsa"), Sessions: cache})
		if err := c.Handshake(); err == nil {
			t.Fatal("handshake completed on fuzz input")
		}
		buf := make([]byte, 100)
		if n, err := c.Read(buf); err == nil || n != 0 {
			t.Fatal("read after a failed handshake")
		}
	})
}

// FuzzApplicationRecords feeds arbitrary protected-record bytes to an
// established connection's Read.
func FuzzApplicationRecords(f *testing.F) {
	s := suites[0]
	seal := func(typ uint8, p []byte) []byte {
		cs, _ := newCipherState(s, make([]byte, s.keyLen), make([]byte, s.ivLen))
		return appendRecords(nil, cs, typ, p)
	}
	f.Add(seal(recordApplicationData, []byte("GET / HTTP/1.1\r\n\r\n")))
	f.Add(seal(recordAlert, []byte{1, 0}))
	f.Add(seal(recordHandshake, []byte{1, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Server(&fuzzConn{r: bytes.NewReader(data)}, &Config{})
		c.in.rr.in, _ = newCipherState(s, make([]byte, s.keyLen), make([]byte, s.ivLen))
		c.out.cs, _ = newCipherState(s, make([]byte, s.keyLen), make([]byte, s.ivLen))
		c.in.rr.strictVersion = true
		c.hsDone.Store(true)
		buf := make([]byte, 1<<10)
		for range 1 << 12 {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
		t.Fatal("Read did not end on finite input")
	})
}
