package replica

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestDenyListOnL4Ports: the replica's deny list reaches its L4 service
// ports: after a PUT on replica 1, replica 2 closes TCP connections from
// the address before dialling the backend and drops its UDP datagrams,
// while another source is served.
func TestDenyListOnL4Ports(t *testing.T) {
	tcpBE, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcpBE.Close() })
	go func() {
		for {
			c, err := tcpBE.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	udpBE, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udpBE.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, a, err := udpBE.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = udpBE.WriteTo(buf[:n], a)
		}
	}()
	tcpPort, udpPort := testkit.FreePort(t, "tcp"), testkit.FreePort(t, "udp")

	cert := selfSigned(t, "app.example.com")
	tc := startCluster(t, 2, nil)
	tb := table(2, cert, backend(t, "ok"))
	tb.L4 = []routing.L4Service{
		{Protocol: routing.L4TCP, Port: tcpPort, Backend: &routing.Backend{Name: "ns/t:1", Endpoints: []string{tcpBE.Addr().String()}}},
		{Protocol: routing.L4UDP, Port: udpPort, Backend: &routing.Backend{Name: "ns/u:1", Endpoints: []string{udpBE.LocalAddr().String()}}},
	}
	tc.holders[1].Store(tb)
	r2 := tc.reps[1]
	testkit.WaitFor(t, 5*time.Second, "r2 serves the L4 ports", func() bool {
		return r2.L4Addr(routing.L4TCP, tcpPort) != nil && r2.L4Addr(routing.L4UDP, udpPort) != nil
	})
	if code, body := tc.adminDo(t, 0, http.MethodPut, "/api/kv/deny/127.0.0.2", "", true); code != http.StatusOK {
		t.Fatalf("PUT deny on r1: %d %s", code, body)
	}
	testkit.WaitFor(t, 5*time.Second, "r2's deny list holds the address", func() bool { return r2.deny.Set().Len() == 1 })

	tcpEcho := func(src string) (string, error) {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", r2.L4Addr(routing.L4TCP, tcpPort).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "ping")
		_ = c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		if isTimeout(err) {
			t.Fatalf("TCP from %s: neither served nor closed", src)
		}
		return string(b), err
	}
	if b, _ := tcpEcho("127.0.0.2"); b != "" {
		t.Fatalf("denied TCP source read %q", b)
	}
	if b, err := tcpEcho("127.0.0.3"); b != "ping" {
		t.Fatalf("other TCP source read %q, %v", b, err)
	}
	if n := r2.deny.Refused(deny.StageL4TCP); n != 1 {
		t.Fatalf("l4_tcp refusals %d, want 1", n)
	}

	udpFrom := func(src string) *net.UDPConn {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, r2.L4Addr(routing.L4UDP, udpPort).(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	if _, err := udpFrom("127.0.0.2").Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "r2 drops the denied datagram", func() bool { return r2.deny.Refused(deny.StageL4UDP) == 1 })
	ok := udpFrom("127.0.0.3")
	if _, err := ok.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := ok.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("other UDP source read %q, %v", buf[:n], err)
	}
}
