package l4

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// freePort returns a port that was free on 127.0.0.1 for proto a moment ago.
func freePort(t testing.TB, proto routing.L4Protocol) int {
	t.Helper()
	if proto == routing.L4UDP {
		return testkit.FreePort(t, "udp")
	}
	return testkit.FreePort(t, "tcp")
}

// tcpServer runs handle for every connection accepted on ln until the test
// ends.
func tcpServer(t testing.TB, ln net.Listener, handle func(net.Conn)) string {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func listenTCP(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// halfCloseEcho reads until EOF, then writes prefix+everything back and
// closes: it only answers after the client's CloseWrite.
func halfCloseEcho(prefix string) func(net.Conn) {
	return func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			return
		}
		_, _ = c.Write(append([]byte(prefix), b...))
	}
}

// streamEcho copies the connection back to itself.
func streamEcho(c net.Conn) { _, _ = io.Copy(c, c) }

// udpEcho answers every datagram with prefix+payload until the test ends.
func udpEcho(t testing.TB, prefix string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte(prefix), buf[:n]...), addr)
		}
	}()
	return pc.LocalAddr().String()
}

func backend(name string, pp int, eps ...string) *routing.Backend {
	return &routing.Backend{Name: name, Endpoints: eps, ProxyProtocol: pp}
}

func l4Table(svcs ...routing.L4Service) *routing.Table { return &routing.Table{L4: svcs} }

func newTestManager(t testing.TB, cfg ManagerConfig) (*Manager, *Metrics) {
	t.Helper()
	if cfg.Metrics == nil {
		m, err := NewMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Metrics = m
	}
	cfg.BindIP = "127.0.0.1"
	mgr := NewManager(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = mgr.Shutdown(ctx)
	})
	return mgr, cfg.Metrics
}

// value sums the samples of the collector (counter or gauge children).
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		if d.Counter != nil {
			sum += d.Counter.GetValue()
		}
		if d.Gauge != nil {
			sum += d.Gauge.GetValue()
		}
	}
	return sum
}

// eventually polls cond for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, what, cond)
}

// roundTripTCP dials addr, writes msg, half-closes and returns all it reads.
func roundTripTCP(t testing.TB, addr, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func udpRoundTrip(t testing.TB, c net.Conn, msg []byte) []byte {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp read: %v", err)
	}
	return bytes.Clone(buf[:n])
}

func addrOf(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
