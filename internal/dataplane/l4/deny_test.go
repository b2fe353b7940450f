package l4

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/routing"
)

// denyList returns a list in force with keys.
func denyList(t testing.TB, keys ...string) *deny.List {
	t.Helper()
	l := &deny.List{}
	setDenied(t, l, keys...)
	return l
}

func setDenied(t testing.TB, l *deny.List, keys ...string) {
	t.Helper()
	s, bad := deny.Compile(keys)
	if len(bad) > 0 {
		t.Fatalf("bad keys %q", bad)
	}
	l.Store(s)
}

// countingEcho is a TCP backend answering "echo:"+request after the
// client's CloseWrite; it counts the connections it accepted.
func countingEcho(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	echo := halfCloseEcho("echo:")
	addr := tcpServer(t, listenTCP(t), func(c net.Conn) { n.Add(1); echo(c) })
	return addr, &n
}

// dialFrom connects to port on 127.0.0.1 from the loopback address src
// (Linux routes all of 127/8 to lo, so any 127.x source can be bound).
func dialFrom(t testing.TB, src string, port int) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addrOf(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// exchange writes msg, half-closes and reads to the end; refused reports
// that the proxy closed the connection without a byte (EOF or a reset).
func exchange(t testing.TB, c *net.TCPConn, msg string) (reply string, refused bool) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte(msg)) // may fail if the proxy closed already
	_ = c.CloseWrite()
	b, err := io.ReadAll(c)
	switch {
	case err == nil && len(b) == 0, errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "", true
	case err != nil:
		t.Fatalf("read: %v", err) // a timeout: neither served nor refused
	}
	return string(b), false
}

func TestTCPDenyList(t *testing.T) {
	be, accepted := countingEcho(t)
	list := denyList(t, "127.0.0.2", "10.0.0.0/8")
	mgr, met := newTestManager(t, ManagerConfig{Deny: list})
	port := freePort(t, routing.L4TCP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/t:1", 0, be)})); err != nil {
		t.Fatal(err)
	}

	if r, refused := exchange(t, dialFrom(t, "127.0.0.2", port), "hi"); !refused {
		t.Fatalf("denied source served %q", r)
	}
	if got := list.Refused(deny.StageL4TCP); got != 1 {
		t.Fatalf("l4_tcp refusals = %d, want 1", got)
	}
	if r, refused := exchange(t, dialFrom(t, "127.0.0.3", port), "hi"); refused || r != "echo:hi" {
		t.Fatalf("other source: %q refused=%v", r, refused)
	}
	// The backend accepts in the order the proxy dialled (one listen
	// queue): had the denied connection been dialled, it would have been
	// accepted before the served one.
	if n := accepted.Load(); n != 1 {
		t.Fatalf("backend accepted %d connections, want 1 (the denied one was dialled)", n)
	}
	if v := value(t, met.drops); v != 1 {
		t.Fatalf("l4 drops = %v, want 1 (deny_list)", v)
	}

	setDenied(t, list, "10.0.0.0/8") // the removal of 127.0.0.2
	if r, refused := exchange(t, dialFrom(t, "127.0.0.2", port), "again"); refused || r != "echo:again" {
		t.Fatalf("after removal: %q refused=%v", r, refused)
	}
	if got := list.Refused(deny.StageL4TCP); got != 1 {
		t.Fatalf("l4_tcp refusals = %d after removal, want 1", got)
	}
	if got := list.Refused(deny.StageConnection) + list.Refused(deny.StageL4UDP); got != 0 {
		t.Fatalf("refusals counted at other stages: %d", got)
	}
}

// With PROXY headers trusted, the client is the header's source, not the
// load balancer that connects.
func TestTCPDenyListProxyProtocolSource(t *testing.T) {
	be, accepted := countingEcho(t)
	list := denyList(t, "198.18.0.9")
	mgr, _ := newTestManager(t, ManagerConfig{Deny: list, AcceptProxyProtocol: true,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	port := freePort(t, routing.L4TCP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/t:1", 0, be)})); err != nil {
		t.Fatal(err)
	}
	viaLB := func(client string) (string, bool) {
		c := dialFrom(t, "127.0.0.1", port)
		hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(client).To4(), Port: 5555}, c.RemoteAddr())
		if _, err := hdr.WriteTo(c); err != nil {
			t.Fatal(err)
		}
		return exchange(t, c, "hi")
	}
	if r, refused := viaLB("198.18.0.9"); !refused {
		t.Fatalf("denied PROXY source served %q", r)
	}
	if r, refused := viaLB("198.18.0.10"); refused || r != "echo:hi" {
		t.Fatalf("other PROXY source: %q refused=%v", r, refused)
	}
	if n, got := accepted.Load(), list.Refused(deny.StageL4TCP); n != 1 || got != 1 {
		t.Fatalf("backend accepted %d, refusals %d; want 1 and 1", n, got)
	}
	// The load balancer's own address is not what is checked.
	setDenied(t, list, "127.0.0.1")
	if r, refused := viaLB("198.18.0.9"); refused || r != "echo:hi" {
		t.Fatalf("after the list changed: %q refused=%v", r, refused)
	}
}

func dialUDPFrom(t testing.TB, src string, port int) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addrOf(port))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUDPDenyList(t *testing.T) {
	be := udpEcho(t, "echo:")
	list := denyList(t, "127.0.0.2")
	mgr, met := newTestManager(t, ManagerConfig{Deny: list})
	port := udpService(t, mgr, be, 0)

	denied := dialUDPFrom(t, "127.0.0.2", port)
	if _, err := denied.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the denied datagram to be dropped", func() bool { return list.Refused(deny.StageL4UDP) == 1 })
	// One goroutine reads the socket: the drop above is final, and the
	// served datagram below is read after it.
	if got := string(udpRoundTrip(t, dialUDPFrom(t, "127.0.0.3", port), []byte("hi"))); got != "echo:hi" {
		t.Fatalf("other source got %q", got)
	}
	if v := value(t, met.flows); v != 1 {
		t.Fatalf("flows_total = %v, want 1 (the denied source made a flow)", v)
	}

	setDenied(t, list) // the removal
	if got := string(udpRoundTrip(t, denied, []byte("again"))); got != "echo:again" {
		t.Fatalf("after removal got %q", got)
	}
	// The denied datagram was never relayed: the first reply on this
	// socket is the one to "again".
	if v := value(t, met.flows); v != 2 {
		t.Fatalf("flows_total = %v, want 2", v)
	}

	// A source denied while its flow is live is cut off at once.
	setDenied(t, list, "127.0.0.2")
	if _, err := denied.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the datagram of a live flow to be dropped", func() bool { return list.Refused(deny.StageL4UDP) == 2 })
	if v := value(t, met.drops); v != 2 {
		t.Fatalf("l4 drops = %v, want 2 (deny_list)", v)
	}
	setDenied(t, list)
	if got := string(udpRoundTrip(t, denied, []byte("back"))); got != "echo:back" {
		t.Fatalf("after second removal got %q (the dropped datagram was relayed?)", got)
	}
}

func TestDenyCheckDoesNotAllocate(t *testing.T) {
	list := denyList(t, "127.0.0.2", "10.0.0.0/8", "2001:db8::/32")
	c := dialUDPFrom(t, "127.0.0.2", freePort(t, routing.L4UDP))
	tcp := &net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 1}
	udp := c.LocalAddr()
	if n := testing.AllocsPerRun(1000, func() {
		list.Refuse(clientAddr(tcp), deny.StageL4TCP)
		list.Refuse(clientAddr(udp), deny.StageL4UDP)
	}); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
	if list.Refused(deny.StageL4TCP) != 1001 || list.Refused(deny.StageL4UDP) != 1001 {
		t.Fatalf("mapped or UDP address not matched: %d %d", list.Refused(deny.StageL4TCP), list.Refused(deny.StageL4UDP))
	}
}
