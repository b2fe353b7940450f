// Command l4bench drives hack/bench-l4.sh: it runs benchmark backends, the
// meshgate L4 proxy alone, and load clients, so that the proxy can be
// compared with nginx's stream module in one run on 127.0.0.1.
//
//	l4bench backends -tcp 127.0.0.1:19000 -udp 127.0.0.1:19001
//	l4bench proxy -tcp-port 19010 -tcp-backend 127.0.0.1:19000 -udp-port 19011 -udp-backend 127.0.0.1:19001
//	l4bench tcp -addr 127.0.0.1:19010 -duration 5s -conns 2
//	l4bench udp -addr 127.0.0.1:19011 -duration 5s -clients 4
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/l4"
	"github.com/meshgate/meshgate/internal/routing"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: l4bench backends|proxy|tcp|udp [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var err error
	switch os.Args[1] {
	case "backends":
		tcp := fs.String("tcp", "127.0.0.1:19000", "TCP sink address")
		udp := fs.String("udp", "127.0.0.1:19001", "UDP echo address")
		_ = fs.Parse(os.Args[2:])
		err = backends(*tcp, *udp)
	case "proxy":
		tp := fs.Int("tcp-port", 19010, "TCP listen port")
		tb := fs.String("tcp-backend", "127.0.0.1:19000", "TCP backend")
		up := fs.Int("udp-port", 19011, "UDP listen port")
		ub := fs.String("udp-backend", "127.0.0.1:19001", "UDP backend")
		_ = fs.Parse(os.Args[2:])
		err = proxy(*tp, *tb, *up, *ub)
	case "tcp":
		addr := fs.String("addr", "127.0.0.1:19010", "target")
		d := fs.Duration("duration", 5*time.Second, "run time")
		conns := fs.Int("conns", 1, "parallel connections")
		_ = fs.Parse(os.Args[2:])
		err = tcpLoad(*addr, *d, *conns)
	case "udp":
		addr := fs.String("addr", "127.0.0.1:19011", "target")
		d := fs.Duration("duration", 5*time.Second, "run time")
		clients := fs.Int("clients", 4, "parallel clients")
		_ = fs.Parse(os.Args[2:])
		err = udpLoad(*addr, *d, *clients)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "l4bench:", err)
		os.Exit(1)
	}
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// backends runs a discarding TCP sink (closes after EOF) and a UDP echo.
func backends(tcpAddr, udpAddr string) error {
	ctx, stop := signalContext()
	defer stop()
	ln, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", udpAddr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
		pc.Close()
	}()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], a)
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

func proxy(tcpPort int, tcpBackend string, udpPort int, udpBackend string) error {
	ctx, stop := signalContext()
	defer stop()
	m := l4.NewManager(l4.ManagerConfig{BindIP: "127.0.0.1"})
	t := &routing.Table{L4: []routing.L4Service{
		{Protocol: routing.L4TCP, Port: tcpPort, Backend: &routing.Backend{Name: "bench/tcp", Endpoints: []string{tcpBackend}}},
		{Protocol: routing.L4UDP, Port: udpPort, Backend: &routing.Backend{Name: "bench/udp", Endpoints: []string{udpBackend}}},
	}}
	if err := m.Update(t); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.Shutdown(sctx)
	return nil
}

// tcpLoad writes 64 KiB chunks on conns connections for d and prints MB/s.
func tcpLoad(addr string, d time.Duration, conns int) error {
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			chunk := make([]byte, 64*1024)
			for time.Since(start) < d {
				n, err := c.Write(chunk)
				total.Add(int64(n))
				if err != nil {
					errs <- err
					return
				}
			}
			_ = c.(*net.TCPConn).CloseWrite()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.Copy(io.Discard, c) // sink closes after draining
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	fmt.Printf("tcp %s conns=%d MB/s=%.1f\n", addr, conns, float64(total.Load())/el/1e6)
	return nil
}

// udpLoad runs ping-pong 64-byte datagrams from clients sockets for d and
// prints answered datagrams per second.
func udpLoad(addr string, d time.Duration, clients int) error {
	var ok, lost atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("udp", addr)
			if err != nil {
				lost.Add(1)
				return
			}
			defer c.Close()
			msg, buf := make([]byte, 64), make([]byte, 2048)
			for time.Since(start) < d {
				_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := c.Write(msg); err != nil {
					lost.Add(1)
					continue
				}
				if _, err := c.Read(buf); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						lost.Add(1)
						continue
					}
					lost.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("udp %s clients=%d datagrams/s=%.0f lost=%d\n", addr, clients, float64(ok.Load())/el, lost.Load())
	return nil
}
