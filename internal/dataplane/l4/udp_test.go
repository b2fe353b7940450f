package l4

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
)

func udpService(t testing.TB, mgr *Manager, be string, idle time.Duration) int {
	t.Helper()
	port := freePort(t, routing.L4UDP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4UDP, Port: port, Backend: backend("ns/u:53", 0, be), IdleTimeout: idle})); err != nil {
		t.Fatal(err)
	}
	return port
}

func dialUDP(t testing.TB, port int) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", addrOf(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUDPEchoConcurrentClients(t *testing.T) {
	be := udpEcho(t, "echo:")
	mgr, met := newTestManager(t, ManagerConfig{})
	port := udpService(t, mgr, be, 0)
	const clients, packets = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		c := dialUDP(t, port)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for j := range packets {
				msg := fmt.Sprintf("client %d packet %d", i, j)
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write([]byte(msg)); err != nil {
					errs <- err
					return
				}
				n, err := c.Read(buf)
				if err != nil {
					errs <- fmt.Errorf("client %d packet %d: %w", i, j, err)
					return
				}
				if string(buf[:n]) != "echo:"+msg {
					errs <- fmt.Errorf("client %d got %q", i, buf[:n])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v := value(t, met.flows); v != clients {
		t.Errorf("flows_total = %v, want %d", v, clients)
	}
	if v := value(t, met.activeFlows); v != clients {
		t.Errorf("flows_active = %v, want %d", v, clients)
	}
}

func TestUDPIdleEviction(t *testing.T) {
	be := udpEcho(t, "")
	mgr, met := newTestManager(t, ManagerConfig{})
	port := udpService(t, mgr, be, 200*time.Millisecond)
	c := dialUDP(t, port)
	if got := udpRoundTrip(t, c, []byte("a")); string(got) != "a" {
		t.Fatalf("got %q", got)
	}
	if v := value(t, met.activeFlows); v != 1 {
		t.Fatalf("flows_active = %v, want 1", v)
	}
	eventually(t, "idle flow removed", func() bool { return value(t, met.activeFlows) == 0 })
	// The same client gets a fresh flow.
	if got := udpRoundTrip(t, c, []byte("b")); string(got) != "b" {
		t.Fatalf("got %q", got)
	}
	if v := value(t, met.flows); v != 2 {
		t.Fatalf("flows_total = %v, want 2", v)
	}
}

func TestUDPFlowTableBound(t *testing.T) {
	cases := []struct {
		name   string
		refuse bool
	}{{"evict oldest", false}, {"refuse when full", true}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := udpEcho(t, "")
			mgr, met := newTestManager(t, ManagerConfig{MaxFlows: 2, RefuseWhenFull: tc.refuse})
			port := udpService(t, mgr, be, 0)
			c1, c2, c3 := dialUDP(t, port), dialUDP(t, port), dialUDP(t, port)
			udpRoundTrip(t, c1, []byte("1"))
			udpRoundTrip(t, c2, []byte("2"))
			_ = c3.SetDeadline(time.Now().Add(300 * time.Millisecond))
			_, _ = c3.Write([]byte("3"))
			n, err := c3.Read(make([]byte, 10))
			if tc.refuse && err == nil {
				t.Fatalf("third client served (%d bytes) with a full table", n)
			}
			if !tc.refuse && err != nil {
				t.Fatalf("third client not served: %v", err)
			}
			if v := value(t, met.activeFlows); v != 2 {
				t.Fatalf("flows_active = %v, want 2", v)
			}
			if v := value(t, met.drops); v != 1 {
				t.Fatalf("drops = %v, want 1", v)
			}
			if !tc.refuse {
				// c2 kept its flow (c1, the oldest, was evicted).
				if got := udpRoundTrip(t, c2, []byte("again")); string(got) != "again" {
					t.Fatalf("got %q", got)
				}
				if v := value(t, met.flows); v != 3 {
					t.Fatalf("flows_total = %v, want 3", v)
				}
			}
		})
	}
}

func TestUDPRetargetAndRemove(t *testing.T) {
	a, b := udpEcho(t, "A"), udpEcho(t, "B")
	mgr, _ := newTestManager(t, ManagerConfig{})
	port := udpService(t, mgr, a, 0)
	c1 := dialUDP(t, port)
	if got := udpRoundTrip(t, c1, []byte("x")); string(got) != "Ax" {
		t.Fatalf("got %q", got)
	}
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4UDP, Port: port, Backend: backend("ns/u:53", 0, b)})); err != nil {
		t.Fatal(err)
	}
	if got := udpRoundTrip(t, dialUDP(t, port), []byte("x")); string(got) != "Bx" {
		t.Fatalf("new flow after re-target got %q", got)
	}
	if got := udpRoundTrip(t, c1, []byte("x")); string(got) != "Ax" {
		t.Fatalf("existing flow after re-target got %q", got)
	}
	if err := mgr.Update(nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "UDP port released", func() bool {
		pc, err := net.ListenPacket("udp", addrOf(port))
		if err == nil {
			pc.Close()
		}
		return err == nil
	})
}
