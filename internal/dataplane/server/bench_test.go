package server

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

// BenchmarkTLSConnect measures one client connection to the TLS listener:
// TCP connect, handshake (full or resumed), one HTTP/1.1 request answered
// 404 by the handler, close. Client and server share the process, so ns/op
// and allocs/op include both sides; compare full against resumed.
func BenchmarkTLSConnect(b *testing.B) {
	f := newFixture(b, nil)
	for _, v := range []struct {
		name string
		max  uint16
	}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}} {
		for _, resume := range []bool{false, true} {
			name := v.name + "/full"
			if resume {
				name = v.name + "/resumed"
			}
			b.Run(name, func(b *testing.B) {
				cfg := &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool, MaxVersion: v.max}
				if resume {
					cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
					connectOnce(b, f.httpsAddr(), cfg) // prime the ticket
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if st := connectOnce(b, f.httpsAddr(), cfg); st.DidResume != resume {
						b.Fatalf("resumed=%v, want %v", st.DidResume, resume)
					}
				}
			})
		}
	}
}

// BenchmarkTLSConnectProxyProtocol is BenchmarkTLSConnect/*/resumed with
// the PROXY protocol on (loopback trusted, a v2 header on every
// connection, as behind an NLB): the per-connection cost of parsing the
// header and of the connection wrapper afterwards.
func BenchmarkTLSConnectProxyProtocol(b *testing.B) {
	f := newFixture(b, func(c *Config) {
		c.ProxyProtocol = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	hdr := proxyHeader(b, 2, "203.0.113.9:40000", f.httpsAddr())
	for _, v := range []struct {
		name string
		max  uint16
	}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}} {
		b.Run(v.name+"/resumed", func(b *testing.B) {
			cfg := &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool, MaxVersion: v.max,
				ClientSessionCache: tls.NewLRUClientSessionCache(1)}
			connectOnce(b, f.httpsAddr(), cfg, hdr...)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if st := connectOnce(b, f.httpsAddr(), cfg, hdr...); !st.DidResume {
					b.Fatal("not resumed")
				}
			}
		})
	}
}

// connectOnce connects, writes prefix (a PROXY header, or nothing), then
// handshakes and makes one request.
func connectOnce(b *testing.B, addr string, cfg *tls.Config, prefix ...byte) tls.ConnectionState {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := raw.Write(prefix); err != nil {
		b.Fatal(err)
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: nothing.invalid\r\nConnection: close\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c.ConnectionState()
}
