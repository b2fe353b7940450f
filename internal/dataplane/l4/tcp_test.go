package l4

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/meshgate/meshgate/internal/routing"
)

func TestTCPHalfCloseEcho(t *testing.T) {
	be := tcpServer(t, listenTCP(t), halfCloseEcho("echo:"))
	mgr, met := newTestManager(t, ManagerConfig{})
	port := freePort(t, routing.L4TCP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/echo:1", 0, be)})); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, msg string }{
		{"short", "hello"},
		{"empty", ""},
		{"large", strings.Repeat("0123456789", 100_000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := roundTripTCP(t, addrOf(port), tc.msg); got != "echo:"+tc.msg {
				t.Fatalf("got %d bytes, want %d", len(got), len("echo:"+tc.msg))
			}
		})
	}
	if v := value(t, met.connections); v != 3 {
		t.Errorf("connections_total = %v, want 3", v)
	}
	eventually(t, "active connections back to 0", func() bool { return value(t, met.active) == 0 })
	if in := value(t, met.bytes); in < 1_000_000 {
		t.Errorf("bytes_total = %v, want > 1e6", in)
	}
}

func TestTCPProxyProtocolToBackend(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run("v"+string(rune('0'+version)), func(t *testing.T) {
			type seen struct {
				src     string
				payload string
			}
			got := make(chan seen, 1)
			ln := &proxyproto.Listener{Listener: listenTCP(t), Policy: func(net.Addr) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
			be := tcpServer(t, ln, func(c net.Conn) {
				b, _ := io.ReadAll(c)
				pc := c.(*proxyproto.Conn)
				hdr := pc.ProxyHeader()
				if hdr == nil || int(hdr.Version) != version {
					got <- seen{}
					return
				}
				got <- seen{src: c.RemoteAddr().String(), payload: string(b)}
			})
			mgr, _ := newTestManager(t, ManagerConfig{})
			port := freePort(t, routing.L4TCP)
			if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/pp:1", version, be)})); err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addrOf(port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write([]byte("payload"))
			_ = c.(*net.TCPConn).CloseWrite()
			select {
			case s := <-got:
				if s.src != c.LocalAddr().String() || s.payload != "payload" {
					t.Fatalf("backend saw source %q payload %q, want %q %q", s.src, s.payload, c.LocalAddr(), "payload")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend saw nothing")
			}
		})
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	be := tcpServer(t, listenTCP(t), streamEcho)
	mgr, _ := newTestManager(t, ManagerConfig{})
	port := freePort(t, routing.L4TCP)
	svc := routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/e:1", 0, be), IdleTimeout: 200 * time.Millisecond}
	if err := mgr.Update(l4Table(svc)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addrOf(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Traffic keeps the connection alive past the idle timeout…
	// One line every 100 ms, half the idle timeout, paced by a ticker: the
	// pause is the input under test, not a wait for something to happen.
	r := bufio.NewReader(c)
	pace := time.NewTicker(100 * time.Millisecond)
	defer pace.Stop()
	for range 4 {
		<-pace.C
		_, _ = c.Write([]byte("x\n"))
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("connection closed while active: %v", err)
		}
	}
	// …and silence closes it.
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF after idle timeout, got %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
}

func TestTCPConnLimit(t *testing.T) {
	be := tcpServer(t, listenTCP(t), streamEcho)
	mgr, met := newTestManager(t, ManagerConfig{MaxConns: 1})
	port := freePort(t, routing.L4TCP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/e:1", 0, be)})); err != nil {
		t.Fatal(err)
	}
	first, err := net.Dial("tcp", addrOf(port))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, _ = first.Write([]byte("a"))
	_ = first.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(first, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", addrOf(port))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err == nil {
		t.Fatal("second connection over the limit was served")
	}
	if v := value(t, met.drops); v != 1 {
		t.Fatalf("drops = %v, want 1", v)
	}
}

func TestUpdateRetargetsAndCloses(t *testing.T) {
	a := tcpServer(t, listenTCP(t), halfCloseEcho("A"))
	b := tcpServer(t, listenTCP(t), halfCloseEcho("B"))
	mgr, _ := newTestManager(t, ManagerConfig{})
	port := freePort(t, routing.L4TCP)
	svc := func(be string) *routing.Table {
		return l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/s:1", 0, be)})
	}
	if err := mgr.Update(svc(a)); err != nil {
		t.Fatal(err)
	}
	before := mgr.Addr(routing.L4TCP, port)
	if got := roundTripTCP(t, addrOf(port), "x"); got != "Ax" {
		t.Fatalf("got %q", got)
	}
	if err := mgr.Update(svc(b)); err != nil {
		t.Fatal(err)
	}
	if mgr.Addr(routing.L4TCP, port) != before {
		t.Fatal("listener was reopened on re-target")
	}
	if got := roundTripTCP(t, addrOf(port), "x"); got != "Bx" {
		t.Fatalf("after re-target got %q", got)
	}
	if err := mgr.Update(&routing.Table{}); err != nil {
		t.Fatal(err)
	}
	if mgr.Addr(routing.L4TCP, port) != nil {
		t.Fatal("listener still registered")
	}
	if c, err := net.DialTimeout("tcp", addrOf(port), time.Second); err == nil {
		c.Close()
		t.Fatal("port still accepting after removal")
	}
}

func TestUpdateReportsBindFailure(t *testing.T) {
	busy := listenTCP(t)
	defer busy.Close()
	be := tcpServer(t, listenTCP(t), halfCloseEcho(""))
	port := busy.Addr().(*net.TCPAddr).Port
	ok := freePort(t, routing.L4TCP)
	mgr, _ := newTestManager(t, ManagerConfig{})
	err := mgr.Update(l4Table(
		routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/a:1", 0, be)},
		routing.L4Service{Protocol: routing.L4TCP, Port: ok, Backend: backend("ns/b:1", 0, be)},
	))
	if err == nil {
		t.Fatal("no error for a busy port")
	}
	if got := roundTripTCP(t, addrOf(ok), "y"); got != "y" {
		t.Fatalf("other service not applied: %q", got)
	}
}

func TestTCPRoundRobinAndFailover(t *testing.T) {
	a := tcpServer(t, listenTCP(t), halfCloseEcho("A"))
	b := tcpServer(t, listenTCP(t), halfCloseEcho("B"))
	dead := addrOf(freePort(t, routing.L4TCP))
	mgr, _ := newTestManager(t, ManagerConfig{})
	port := freePort(t, routing.L4TCP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/rr:1", 0, a, b, dead)})); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for range 6 {
		counts[roundTripTCP(t, addrOf(port), "")]++
	}
	if counts["A"] < 2 || counts["B"] < 2 || counts["A"]+counts["B"] != 6 {
		t.Fatalf("distribution %v", counts)
	}
}

func TestShutdownDrainsThenForceCloses(t *testing.T) {
	be := tcpServer(t, listenTCP(t), streamEcho)
	met, _ := NewMetrics(nil)
	mgr := NewManager(ManagerConfig{BindIP: "127.0.0.1", Metrics: met})
	port := freePort(t, routing.L4TCP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/e:1", 0, be)})); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addrOf(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, "connection active", func() bool { return value(t, met.active) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	var serr error
	go func() { defer wg.Done(); serr = mgr.Shutdown(ctx) }()
	wg.Wait()
	if !errors.Is(serr, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", serr)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("connection not closed by Shutdown: %v", err)
	}
	if err := mgr.Update(&routing.Table{}); err == nil {
		t.Fatal("Update after Shutdown succeeded")
	}
}

func TestAcceptProxyProtocol(t *testing.T) {
	srcs := make(chan string, 1)
	ln := &proxyproto.Listener{Listener: listenTCP(t)}
	be := tcpServer(t, ln, func(c net.Conn) {
		_, _ = io.ReadAll(c)
		srcs <- c.RemoteAddr().String()
	})
	cases := []struct {
		name    string
		trusted []netip.Prefix
		wantSrc string // "" means the connection is refused
	}{
		{"trusted load balancer", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "198.18.0.9:5555"},
		{"untrusted source", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ""},
		// No default trust: loopback is where sidecars and port-forwards
		// connect from.
		{"nobody trusted", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mgr, _ := newTestManager(t, ManagerConfig{AcceptProxyProtocol: true, TrustedProxies: tc.trusted})
			port := freePort(t, routing.L4TCP)
			if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/pp:1", 2, be)})); err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addrOf(port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			hdr := proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.ParseIP("198.18.0.9").To4(), Port: 5555}, c.RemoteAddr())
			_, _ = hdr.WriteTo(c)
			_, _ = c.Write([]byte("data"))
			_ = c.(*net.TCPConn).CloseWrite()
			select {
			case src := <-srcs:
				if src != tc.wantSrc {
					t.Fatalf("backend saw %q, want %q", src, tc.wantSrc)
				}
			case <-time.After(time.Second):
				if tc.wantSrc != "" {
					t.Fatal("backend saw nothing")
				}
			}
		})
	}
}
