package server

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// tcpPipe is one end of a net.Pipe that reports TCP addresses, so the PROXY
// trust policy sees a loopback source.
type tcpPipe struct{ net.Conn }

func (tcpPipe) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (tcpPipe) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443} }

// FuzzProxyHeader feeds arbitrary bytes to the PROXY header stage (the
// protocol on) from a trusted and from an untrusted source: it must never
// panic, must refuse every untrusted connection, and when it accepts a
// connection the bytes that follow must reach the reader unchanged (a suffix
// of the input, nothing lost or duplicated).
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.9 127.0.0.1 40000 8443\r\nGET / HTTP/1.1\r\n\r\n"), false)
	f.Add([]byte("PROXY UNKNOWN\r\n\x16\x03\x01"), true)
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x09\x7f\x00\x00\x01\x9c\x40\x20\xfbhello"), true)
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), false)
	f.Add([]byte{}, true)
	servers := map[bool]*Server{}
	for trusted, prefix := range map[bool]string{true: "127.0.0.0/8", false: "10.0.0.0/8"} {
		s, err := New(Config{
			Handler:        newHandler(f),
			ProxyProtocol:  true,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix(prefix)},
		})
		if err != nil {
			f.Fatal(err)
		}
		servers[trusted] = s
	}
	f.Fuzz(func(t *testing.T, in []byte, trusted bool) {
		s := servers[trusted]
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			_, _ = client.Write(in)
			_ = client.Close()
		}()
		c, err := s.readProxyHeader(&trackedConn{Conn: tcpPipe{server}, srv: s}, time.Now().Add(2*time.Second))
		if err != nil {
			_ = server.Close()
			return
		}
		defer c.Close()
		if !trusted {
			t.Fatal("accepted a connection from an untrusted source")
		}
		if c.RemoteAddr() == nil {
			t.Fatal("accepted connection without a remote address")
		}
		rest, _ := io.ReadAll(c)
		if !bytes.HasSuffix(in, rest) {
			t.Fatalf("payload after header altered: in %q, read %q", in, rest)
		}
	})
}
