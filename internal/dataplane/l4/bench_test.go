package l4

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
)

// BenchmarkTCPThroughput streams 64 KiB writes to a discarding backend,
// directly and through the proxy; compare the MB/s columns.
func BenchmarkTCPThroughput(b *testing.B) {
	var got atomic.Int64
	done := make(chan struct{}, 1)
	sink := tcpServer(b, listenTCP(b), func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		got.Add(n)
		done <- struct{}{}
	})
	mgr, _ := newTestManager(b, ManagerConfig{})
	port := freePort(b, routing.L4TCP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4TCP, Port: port, Backend: backend("bench/sink:1", 0, sink)})); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 64*1024)
	for _, tc := range []struct{ name, addr string }{{"direct", sink}, {"proxy", addrOf(port)}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			got.Store(0)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			_ = c.(*net.TCPConn).CloseWrite()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				b.Fatal("sink did not finish")
			}
			b.StopTimer()
			c.Close()
			if want := int64(b.N * len(chunk)); got.Load() != want {
				b.Fatalf("sink read %d bytes, want %d", got.Load(), want)
			}
		})
	}
}

// BenchmarkUDPEcho measures request/response datagrams per second (64-byte
// payloads, 4 concurrent clients per GOMAXPROCS) directly and through the
// proxy.
func BenchmarkUDPEcho(b *testing.B) {
	echo := udpEcho(b, "")
	mgr, _ := newTestManager(b, ManagerConfig{})
	port := freePort(b, routing.L4UDP)
	if err := mgr.Update(l4Table(routing.L4Service{Protocol: routing.L4UDP, Port: port, Backend: backend("bench/echo:1", 0, echo)})); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, addr string }{{"direct", echo}, {"proxy", addrOf(port)}} {
		b.Run(tc.name, func(b *testing.B) {
			var lost atomic.Int64
			b.SetParallelism(4)
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("udp", tc.addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				msg, buf := make([]byte, 64), make([]byte, 2048)
				for pb.Next() {
					_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
					if _, err := c.Write(msg); err != nil {
						b.Error(err)
						return
					}
					if _, err := c.Read(buf); err != nil {
						lost.Add(1) // a dropped datagram times out; count it
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "datagrams/s")
			b.ReportMetric(float64(lost.Load()), "lost")
		})
	}
}
