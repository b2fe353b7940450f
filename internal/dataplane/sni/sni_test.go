package sni

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
)

// captureHello runs a crypto/tls client with cfg against one end of a
// net.Pipe and returns the raw bytes of its first flight (the ClientHello
// record).
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.HandshakeContext(ctx)
		client.Close()
	}()
	if err := server.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		t.Fatalf("read record header: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		t.Fatalf("read record body: %v", err)
	}
	return append(hdr, body...)
}

// resplit re-frames the handshake payload of a single-record hello into
// records of at most size bytes each.
func resplit(rec []byte, size int) []byte {
	payload := rec[5:]
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

// memConn serves reads from a buffer; writes are discarded.
type memConn struct {
	net.Conn // nil; only the methods below are used
	r        *bytes.Reader
	deadline time.Time
}

func (m *memConn) Read(p []byte) (int, error)         { return m.r.Read(p) }
func (m *memConn) SetReadDeadline(t time.Time) error  { m.deadline = t; return nil }
func (m *memConn) Close() error                       { return nil }
func (m *memConn) Write(p []byte) (int, error)        { return len(p), nil }
func newMemConn(b []byte) *memConn                    { return &memConn{r: bytes.NewReader(b)} }
func (m *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (m *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (m *memConn) SetDeadline(t time.Time) error      { return nil }
func (m *memConn) SetWriteDeadline(t time.Time) error { return nil }

func TestPeekRealClientHellos(t *testing.T) {
	cases := []struct {
		name     string
		cfg      *tls.Config
		wantSNI  string
		wantALPN []string
	}{
		{"tls13 plain", &tls.Config{ServerName: "a.example.com"}, "a.example.com", nil},
		{"uppercase lowered", &tls.Config{ServerName: "WWW.Example.COM"}, "www.example.com", nil},
		{"alpn", &tls.Config{ServerName: "h.example", NextProtos: []string{"h2", "http/1.1"}}, "h.example", []string{"h2", "http/1.1"}},
		{"tls12 only", &tls.Config{ServerName: "old.example", MaxVersion: tls.VersionTLS12}, "old.example", nil},
		{"post-quantum key share", &tls.Config{ServerName: "pq.example", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}, "pq.example", nil},
		{"ip address sends no SNI", &tls.Config{ServerName: "127.0.0.1"}, "", nil},
		{"no server name", &tls.Config{InsecureSkipVerify: true}, "", nil},
		{"long name", &tls.Config{ServerName: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example"}, strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := captureHello(t, tc.cfg)
			for _, size := range []int{maxRecordPayload, 1000, 100} {
				in := rec
				if size < len(rec)-5 {
					in = resplit(rec, size)
				}
				if (len(in)+size-1)/size > maxRecords+2 { // too many records for this size
					continue
				}
				ch, wrapped, err := PeekClientHello(newMemConn(in), time.Second)
				if err != nil {
					t.Fatalf("split %d: %v", size, err)
				}
				if ch.ServerName != tc.wantSNI {
					t.Errorf("split %d: server name %q, want %q", size, ch.ServerName, tc.wantSNI)
				}
				if strings.Join(ch.ALPN, ",") != strings.Join(tc.wantALPN, ",") {
					t.Errorf("split %d: ALPN %q, want %q", size, ch.ALPN, tc.wantALPN)
				}
				got, _ := io.ReadAll(wrapped)
				if !bytes.Equal(got, in) {
					t.Errorf("split %d: replay differs: %d bytes, want %d", size, len(got), len(in))
				}
			}
		})
	}
}

func TestPeekRejects(t *testing.T) {
	rec := captureHello(t, &tls.Config{ServerName: "x.example"})
	tooMany := resplit(rec, 10)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrNotTLS},
		{"ssl2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0}, ErrNotTLS},
		{"zero length record", []byte{22, 3, 1, 0, 0}, ErrMalformed},
		{"oversized record", []byte{22, 3, 1, 0x40, 0x01}, ErrMalformed},
		{"server hello", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, ErrNotClientHello},
		{"huge handshake length", []byte{22, 3, 1, 0, 4, 1, 0x01, 0, 0}, ErrTooLarge},
		{"too many records", tooMany, ErrTooLarge},
		{"alert inside hello", append(resplit(rec, 50)[:55], 21, 3, 3, 0, 2, 2, 40), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, wrapped, err := Peek(newMemConn(tc.in), time.Second)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if wrapped == nil {
				t.Fatal("wrapped is nil")
			}
			got, _ := io.ReadAll(wrapped)
			if !bytes.Equal(got, tc.in) {
				t.Errorf("replay differs: %q, want %q", got, tc.in)
			}
		})
	}
}

func TestPeekTruncatedIsIOError(t *testing.T) {
	rec := captureHello(t, &tls.Config{ServerName: "x.example"})
	for n := 0; n < len(rec); n++ {
		_, wrapped, err := Peek(newMemConn(rec[:n]), time.Second)
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("prefix %d: err = %v, want EOF", n, err)
		}
		got, _ := io.ReadAll(wrapped)
		if !bytes.Equal(got, rec[:n]) {
			t.Fatalf("prefix %d: replay differs", n)
		}
	}
}

// buildHello assembles a ClientHello handshake message with the given
// extensions block (nil: no extensions field at all).
func buildHello(exts []byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)             // session id
	body = append(body, 0, 2, 0x13, 1) // cipher suites
	body = append(body, 1, 0)          // compression
	if exts != nil {
		body = append(body, byte(len(exts)>>8), byte(len(exts)))
		body = append(body, exts...)
	}
	return append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func ext(typ int, data []byte) []byte {
	return append([]byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}, data...)
}

func sniData(entries ...[]byte) []byte {
	var list []byte
	for _, e := range entries {
		list = append(list, e...)
	}
	return append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
}

func hostEntry(typ byte, name string) []byte {
	return append([]byte{typ, byte(len(name) >> 8), byte(len(name))}, name...)
}

func TestParseClientHello(t *testing.T) {
	cat := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	cases := []struct {
		name    string
		msg     []byte
		wantSNI string
		wantErr error
	}{
		{"no extensions", buildHello(nil), "", nil},
		{"empty extensions", buildHello([]byte{}), "", nil},
		{"sni", buildHello(ext(0, sniData(hostEntry(0, "a.b")))), "a.b", nil},
		{"unknown name type skipped", buildHello(ext(0, sniData(hostEntry(9, "zz"), hostEntry(0, "a.b")))), "a.b", nil},
		{"other extensions around", buildHello(cat(ext(10, []byte{0, 2, 0, 29}), ext(0, sniData(hostEntry(0, "a.b"))), ext(43, []byte{2, 3, 4}))), "a.b", nil},
		{"duplicate sni ext", buildHello(cat(ext(0, sniData(hostEntry(0, "a"))), ext(0, sniData(hostEntry(0, "b"))))), "", ErrMalformed},
		{"two host names", buildHello(ext(0, sniData(hostEntry(0, "a"), hostEntry(0, "b")))), "", ErrMalformed},
		{"trailing dot", buildHello(ext(0, sniData(hostEntry(0, "a.b.")))), "", ErrMalformed},
		{"empty name", buildHello(ext(0, sniData(hostEntry(0, "")))), "", ErrMalformed},
		{"control byte", buildHello(ext(0, sniData(hostEntry(0, "a\x00b")))), "", ErrMalformed},
		{"space", buildHello(ext(0, sniData(hostEntry(0, "a b")))), "", ErrMalformed},
		{"name too long", buildHello(ext(0, sniData(hostEntry(0, strings.Repeat("a", 256))))), "", ErrMalformed},
		{"empty sni list", buildHello(ext(0, []byte{0, 0})), "", ErrMalformed},
		{"sni list overruns", buildHello(ext(0, []byte{0, 9, 0, 0, 1, 'a'})), "", ErrMalformed},
		{"sni trailing bytes", buildHello(ext(0, append(sniData(hostEntry(0, "a")), 0))), "", ErrMalformed},
		{"extension overruns", buildHello([]byte{0, 0, 0, 9, 1}), "", ErrMalformed},
		{"alpn empty name", buildHello(ext(16, []byte{0, 1, 0})), "", ErrMalformed},
		{"not client hello", append([]byte{2}, buildHello(nil)[1:]...), "", ErrNotClientHello},
		{"length mismatch", append(buildHello(nil), 0), "", ErrMalformed},
		{"short header", []byte{1, 0}, "", ErrMalformed},
		{"too large", []byte{1, 0xff, 0xff, 0xff}, "", ErrTooLarge},
		{"session id too long", func() []byte { m := buildHello(nil); m[4+34] = 40; return m }(), "", ErrMalformed},
		{"odd cipher suites", func() []byte { m := buildHello(nil); m[4+35+1] = 3; return m }(), "", ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := ParseClientHello(tc.msg)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if ch.ServerName != tc.wantSNI {
				t.Errorf("server name %q, want %q", ch.ServerName, tc.wantSNI)
			}
		})
	}
}

func TestParseEveryTruncation(t *testing.T) {
	rec := captureHello(t, &tls.Config{ServerName: "t.example", NextProtos: []string{"h2"}})
	msg := rec[5:]
	sid := int(msg[4+34])
	cs := int(msg[4+35+sid])<<8 | int(msg[4+36+sid])
	cm := int(msg[4+37+sid+cs])
	fixedEnd := 4 + 2 + 32 + 1 + sid + 2 + cs + 1 + cm
	for n := 0; n < len(msg); n++ {
		cut := append([]byte(nil), msg[:n]...)
		if n >= 4 { // keep the header consistent so the body parser is exercised
			l := n - 4
			cut[1], cut[2], cut[3] = byte(l>>16), byte(l>>8), byte(l)
		}
		_, err := ParseClientHello(cut)
		if (err == nil) != (n == fixedEnd) {
			t.Errorf("prefix %d (fixed fields end at %d): err = %v", n, fixedEnd, err)
		}
	}
}

func TestPeekTimeoutAndDeadlineCleared(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	start := time.Now()
	_, wrapped, err := Peek(server, 50*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Peek took %v", d)
	}
	// The deadline must be cleared: a later read waits for data.
	go func() { _, _ = client.Write([]byte{1}) }()
	b := make([]byte, 1)
	if _, err := wrapped.Read(b); err != nil {
		t.Fatalf("read after Peek: %v", err)
	}
}

func TestPeekThenTLSHandshake(t *testing.T) {
	cert := selfSigned(t, "srv.example")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		name, wrapped, err := Peek(c, 5*time.Second)
		if err != nil || name != "srv.example" {
			errc <- errors.Join(err, errors.New("unexpected name "+name))
			return
		}
		s := tls.Server(wrapped, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := s.Handshake(); err != nil {
			errc <- err
			return
		}
		_, err = s.Write([]byte("hi"))
		errc <- err
	}()
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "srv.example", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q: %v", b, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func selfSigned(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return *testkit.SelfSigned(t, name)
}

// TestFuzzCorpus checks that the committed seed corpus of real crypto/tls
// ClientHellos is present; with SNI_WRITE_CORPUS=1 it regenerates it.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseClientHello")
	if os.Getenv("SNI_WRITE_CORPUS") != "1" {
		for _, name := range []string{"tls13", "alpn", "tls12", "pq", "nosni", "minimal"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !bytes.HasPrefix(b, []byte("go test fuzz v1\n[]byte(")) {
				t.Errorf("seed %s missing or malformed (regenerate with SNI_WRITE_CORPUS=1): %v", name, err)
			}
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgs := map[string]*tls.Config{
		"tls13":   {ServerName: "a.example.com"},
		"alpn":    {ServerName: "h.example", NextProtos: []string{"h2", "http/1.1"}},
		"tls12":   {ServerName: "old.example", MaxVersion: tls.VersionTLS12},
		"pq":      {ServerName: "pq.example", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}},
		"nosni":   {InsecureSkipVerify: true},
		"minimal": nil,
	}
	for name, cfg := range cfgs {
		var msg []byte
		if cfg == nil {
			msg = buildHello(ext(0, sniData(hostEntry(0, "m.example"))))
		} else {
			msg = captureHello(t, cfg)[5:]
		}
		data := "go test fuzz v1\n[]byte(" + quoteBytes(msg) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func quoteBytes(b []byte) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range b {
		sb.WriteString(`\x`)
		sb.WriteByte("0123456789abcdef"[c>>4])
		sb.WriteByte("0123456789abcdef"[c&15])
	}
	sb.WriteByte('"')
	return sb.String()
}

func BenchmarkParseClientHello(b *testing.B) {
	msg := captureHello(b, &tls.Config{ServerName: "bench.example", NextProtos: []string{"h2", "http/1.1"}})[5:]
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseClientHello(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPeekKeepsCallerDeadline(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	if err := server.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, _, err := Peek(server, 0)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want the caller's deadline to expire", err)
	}
}

// countingConn counts the reads that reach the connection.
type countingConn struct {
	*memConn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) { c.reads++; return c.memConn.Read(p) }

// TestPeekReadsAWholeHelloOnce: a ClientHello that has arrived whole (the
// post-quantum one, larger than the first buffer, included) is read with one
// read per buffer growth, not one per record header and payload, and bytes
// past it are replayed.
func TestPeekReadsAWholeHelloOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      *tls.Config
		maxReads int
	}{
		{"X25519", &tls.Config{ServerName: "a.example", CurvePreferences: []tls.CurveID{tls.X25519}}, 1},
		{"X25519MLKEM768", &tls.Config{ServerName: "a.example"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append(captureHello(t, tc.cfg), "early"...)
			c := &countingConn{memConn: newMemConn(in)}
			ch, wrapped, err := PeekClientHello(c, 0)
			if err != nil {
				t.Fatal(err)
			}
			if ch.ServerName != "a.example" {
				t.Fatalf("server name %q", ch.ServerName)
			}
			if c.reads > tc.maxReads {
				t.Errorf("%d reads for a %d-byte hello that arrived whole, want ≤ %d", c.reads, len(in), tc.maxReads)
			}
			got, _ := io.ReadAll(wrapped)
			if !bytes.Equal(got, in) {
				t.Errorf("replay differs: %d bytes, want %d", len(got), len(in))
			}
		})
	}
}
