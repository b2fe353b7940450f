package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"

	ref "github.com/pires/go-proxyproto"
)

// v2 builds a v2 header: command byte, family byte, the address block and
// TLV bytes after it.
func v2(cmd, fam byte, addrs []byte, tlvs ...byte) []byte {
	body := append(append([]byte{}, addrs...), tlvs...)
	b := append([]byte{}, sigV2...)
	b = append(b, cmd, fam, byte(len(body)>>8), byte(len(body)))
	return append(b, body...)
}

var (
	addr4 = []byte{203, 0, 113, 9, 127, 0, 0, 1, 0x9c, 0x40, 0x20, 0xfb} // 203.0.113.9:40000 → 127.0.0.1:8443
	addr6 = append(append(netip.MustParseAddr("2001:db8::9").AsSlice(), netip.MustParseAddr("2001:db8::1").AsSlice()...), 0x9c, 0x40, 0x01, 0xbb)
)

func TestParse(t *testing.T) {
	src4, dst4 := netip.MustParseAddrPort("203.0.113.9:40000"), netip.MustParseAddrPort("127.0.0.1:8443")
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::9]:40000"), netip.MustParseAddrPort("[2001:db8::1]:443")
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
		n    int // header length; 0 with err
		err  error
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.9 127.0.0.1 40000 8443\r\nGET /"), Header{Version: 1, Source: src4, Destination: dst4}, 45, nil},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::9 2001:db8::1 40000 443\r\n\x16"), Header{Version: 1, Source: src6, Destination: dst6}, 46, nil},
		{"v1 TCP6 mapped IPv4", []byte("PROXY TCP6 ::ffff:203.0.113.9 ::1 1 2\r\n"),
			Header{Version: 1, Source: netip.MustParseAddrPort("[::ffff:203.0.113.9]:1"), Destination: netip.MustParseAddrPort("[::1]:2")}, 39, nil},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n\x16\x03"), Header{Version: 1, Local: true}, 15, nil},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ff:: ff:: 1 2\r\n"), Header{Version: 1, Local: true}, 29, nil},
		{"v1 partial", []byte("PROXY TCP4 203.0.113.9 12"), Header{}, 0, ErrIncomplete},
		{"v1 signature partial", []byte("PROX"), Header{}, 0, ErrIncomplete},
		{"v1 bare LF", []byte("PROXY TCP4 203.0.113.9 127.0.0.1 40000 8443\n"), Header{}, 0, ErrMalformed},
		{"v1 too long", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n"), Header{}, 0, ErrMalformed},
		{"v1 no CRLF in 107 bytes", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100)), Header{}, 0, ErrMalformed},
		{"v1 IPv6 as TCP4", []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), Header{}, 0, ErrMalformed},
		{"v1 IPv4 as TCP6", []byte("PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n"), Header{}, 0, ErrMalformed},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), Header{}, 0, ErrMalformed},
		{"v1 port too large", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"), Header{}, 0, ErrMalformed},
		{"v1 signed port", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n"), Header{}, 0, ErrMalformed},
		{"v1 missing field", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), Header{}, 0, ErrMalformed},
		{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"), Header{}, 0, ErrMalformed},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n"), Header{}, 0, ErrMalformed},
		{"v1 unknown protocol", []byte("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"), Header{}, 0, ErrMalformed},
		{"v2 TCP4", append(v2(0x21, 0x11, addr4), "hello"...), Header{Version: 2, Source: src4, Destination: dst4}, 28, nil},
		{"v2 TCP6", v2(0x21, 0x21, addr6), Header{Version: 2, Source: src6, Destination: dst6}, 52, nil},
		{"v2 TCP4 with TLVs", v2(0x21, 0x11, addr4, 0x04, 0x00, 0x02, 'h', 'i'), Header{Version: 2, Source: src4, Destination: dst4}, 33, nil},
		{"v2 LOCAL", v2(0x20, 0x00, nil), Header{Version: 2, Local: true}, 16, nil},
		{"v2 LOCAL with addresses", v2(0x20, 0x11, addr4), Header{Version: 2, Local: true}, 28, nil},
		{"v2 UNIX", v2(0x21, 0x31, make([]byte, 216)), Header{Version: 2, Local: true}, 232, nil},
		{"v2 partial fixed part", v2(0x21, 0x11, addr4)[:14], Header{}, 0, ErrIncomplete},
		{"v2 partial addresses", v2(0x21, 0x11, addr4)[:20], Header{}, 0, ErrIncomplete},
		{"v2 signature partial", sigV2[:7], Header{}, 0, ErrIncomplete},
		{"v2 PROXY UNSPEC", v2(0x21, 0x00, nil), Header{}, 0, ErrMalformed},
		{"v2 version 1", v2(0x11, 0x11, addr4), Header{}, 0, ErrMalformed},
		{"v2 command 2", v2(0x22, 0x11, addr4), Header{}, 0, ErrMalformed},
		{"v2 family 4", v2(0x21, 0x41, addr4), Header{}, 0, ErrMalformed},
		{"v2 PROXY without transport", v2(0x21, 0x20, addr6), Header{}, 0, ErrMalformed},
		{"v2 PROXY transport 3", v2(0x21, 0x13, addr4), Header{}, 0, ErrMalformed},
		{"v2 DGRAM", v2(0x21, 0x12, addr4), Header{Version: 2, Source: src4, Destination: dst4}, 28, nil},
		{"v2 length short of the addresses", v2(0x21, 0x21, addr4), Header{}, 0, ErrMalformed},
		{"TLS without header", []byte("\x16\x03\x01\x02\x00"), Header{}, 0, ErrNoHeader},
		{"HTTP without header", []byte("GET / HTTP/1.1\r\n"), Header{}, 0, ErrNoHeader},
		{"v2 signature broken", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 0), Header{}, 0, ErrNoHeader},
		{"v1 signature broken", []byte("PROXX TCP4"), Header{}, 0, ErrNoHeader},
		{"empty", nil, Header{}, 0, ErrIncomplete},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := Parse(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if h != tc.want || n != tc.n {
				t.Errorf("got %+v, %d bytes; want %+v, %d", h, n, tc.want, tc.n)
			}
		})
	}
}

// TestParseFormattedByGoProxyproto parses headers that go-proxyproto (the
// library the L4 services use to write headers to backends) formats, for
// random addresses of both families in both versions.
func TestParseFormattedByGoProxyproto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		v6 := i%2 == 1
		addr := func() netip.AddrPort {
			var b [16]byte
			for j := range b {
				b[j] = byte(rng.UintN(256))
			}
			a := netip.AddrFrom4([4]byte(b[:4]))
			if v6 {
				a = netip.AddrFrom16(b)
			}
			return netip.AddrPortFrom(a, uint16(rng.UintN(65536)))
		}
		src, dst := addr(), addr()
		fam := ref.TCPv4
		if v6 {
			fam = ref.TCPv6
		}
		version := byte(1 + i%4/2)
		hdr := ref.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
		hdr.TransportProtocol = fam
		raw, err := hdr.Format()
		if err != nil {
			t.Fatal(err)
		}
		h, n, err := Parse(append(raw, "payload"...))
		if err != nil || n != len(raw) {
			t.Fatalf("%q: %v, %d bytes of %d", raw, err, n, len(raw))
		}
		if want := (Header{Version: int(version), Source: src, Destination: dst}); h != want {
			t.Fatalf("%q: got %+v, want %+v", raw, h, want)
		}
	}
}

// TestParseAllocations holds the reason the package exists: a v2 header
// (what HAProxy's send-proxy-v2 and cloud load balancers write) costs no
// allocation, a v1 header the string copies of its two addresses.
func TestParseAllocations(t *testing.T) {
	for _, tc := range []struct {
		in  []byte
		max float64
	}{
		{v2(0x21, 0x11, addr4), 0},
		{v2(0x21, 0x21, addr6), 0},
		{[]byte("PROXY TCP4 203.0.113.9 127.0.0.1 40000 8443\r\n"), 2},
	} {
		if n := testing.AllocsPerRun(100, func() { _, _, _ = Parse(tc.in) }); n > tc.max {
			t.Errorf("%q: %v allocations per Parse, want at most %v", tc.in, n, tc.max)
		}
	}
}

// FuzzParse checks Parse against go-proxyproto on the same bytes: a
// header Parse accepts is one go-proxyproto accepts, with the same length
// and addresses (Parse is stricter on v1's field syntax, so the converse
// does not hold), and a prefix of an accepted header is incomplete.
func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.9 127.0.0.1 40000 8443\r\nGET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::9 2001:db8::1 40000 443\r\n\x16\x03\x01"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(append(v2(0x21, 0x11, addr4), "hello"...))
	f.Add(v2(0x21, 0x21, addr6, 0x04, 0x00, 0x01, 'x'))
	f.Add(v2(0x20, 0x00, nil))
	f.Add([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, n, err := Parse(in)
		if err != nil {
			if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrNoHeader) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if n <= 0 || n > len(in) {
			t.Fatalf("length %d of %d bytes", n, len(in))
		}
		if _, _, err := Parse(in[:n-1]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("a header's prefix gave %v, want ErrIncomplete", err)
		}
		br := bufio.NewReader(bytes.NewReader(in[:n]))
		rh, err := ref.Read(br)
		if err != nil {
			t.Fatalf("go-proxyproto refuses %q: %v", in[:n], err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("go-proxyproto left %d bytes of the header", br.Buffered())
		}
		if rh.Version != byte(h.Version) {
			t.Fatalf("version %d, go-proxyproto %d", h.Version, rh.Version)
		}
		if h.Local {
			if !rh.Command.IsLocal() && !rh.TransportProtocol.IsUnix() {
				t.Fatalf("local, go-proxyproto has %+v", rh)
			}
			return
		}
		if got, want := net.TCPAddrFromAddrPort(h.Source).String(), rh.SourceAddr.String(); got != want {
			t.Fatalf("source %s, go-proxyproto %s", got, want)
		}
		if got, want := net.TCPAddrFromAddrPort(h.Destination).String(), rh.DestinationAddr.String(); got != want {
			t.Fatalf("destination %s, go-proxyproto %s", got, want)
		}
	})
}
