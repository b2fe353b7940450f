package l4

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
)

// frontendIP is a loopback address of its own (Linux routes all of
// 127.0.0.0/8 to lo), standing in for a Gateway's pool address.
var frontendIP = netip.MustParseAddr("127.0.82.7")

// TestFrontendListenersKeyedByAddress serves one TCP and one UDP port
// number on BindIP and on a frontend address at once, each with its own
// backend, then removes the frontend's services and checks that only its
// listeners close.
func TestFrontendListenersKeyedByAddress(t *testing.T) {
	own := tcpServer(t, listenTCP(t), halfCloseEcho("own:"))
	fe := tcpServer(t, listenTCP(t), halfCloseEcho("fe:"))
	ownU, feU := udpEcho(t, "own:"), udpEcho(t, "fe:")
	mgr, _ := newTestManager(t, ManagerConfig{})
	port := freePort(t, routing.L4TCP)
	uport := freePort(t, routing.L4UDP)
	both := l4Table(
		routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("ns/own:1", 0, own)},
		routing.L4Service{Protocol: routing.L4UDP, Port: uport, Backend: backend("ns/ownu:1", 0, ownU)},
		routing.L4Service{Addr: frontendIP, Protocol: routing.L4TCP, Port: port, Backend: backend("ns/fe:1", 0, fe)},
		routing.L4Service{Addr: frontendIP, Protocol: routing.L4UDP, Port: uport, Backend: backend("ns/feu:1", 0, feU)},
	)
	if err := mgr.Update(both); err != nil {
		t.Fatal(err)
	}
	feAddr := net.JoinHostPort(frontendIP.String(), strconv.Itoa(port))
	if got := roundTripTCP(t, addrOf(port), "x"); got != "own:x" {
		t.Fatalf("BindIP's port answered %q", got)
	}
	if got := roundTripTCP(t, feAddr, "x"); got != "fe:x" {
		t.Fatalf("frontend's port answered %q", got)
	}
	if a := mgr.AddrOn(frontendIP, routing.L4UDP, uport); a == nil || a.(*net.UDPAddr).AddrPort().Addr() != frontendIP {
		t.Fatalf("frontend UDP listener bound %v", a)
	}
	for _, c := range []struct{ addr, want string }{
		{addrOf(uport), "own:u"},
		{net.JoinHostPort(frontendIP.String(), strconv.Itoa(uport)), "fe:u"},
	} {
		conn, err := net.Dial("udp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(udpRoundTrip(t, conn, []byte("u"))); got != c.want {
			t.Errorf("UDP %s answered %q, want %q", c.addr, got, c.want)
		}
		conn.Close()
	}

	if err := mgr.Update(l4Table(both.L4[:2]...)); err != nil {
		t.Fatal(err)
	}
	if mgr.AddrOn(frontendIP, routing.L4TCP, port) != nil || mgr.AddrOn(frontendIP, routing.L4UDP, uport) != nil {
		t.Fatal("frontend listeners still registered after their services left")
	}
	if c, err := net.DialTimeout("tcp", feAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("frontend port still accepting after removal")
	}
	if got := roundTripTCP(t, addrOf(port), "y"); got != "own:y" {
		t.Fatalf("BindIP's port after the frontend left answered %q", got)
	}
}
