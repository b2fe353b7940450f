package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// l4Idle closes TCP echo connections idle this long.
const l4Idle = 60 * time.Second

// maxTCPConns bounds concurrent TCP echo connections; more are closed at
// accept.
const maxTCPConns = 1024

// serveUDP echoes every datagram back to its sender until ctx is done.
// The caller owns pc; serveUDP closes it when ctx ends.
func serveUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { _ = pc.Close() })
	defer stop()
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("udp echo read: %w", err)
		}
		if _, err := pc.WriteTo(buf[:n], addr); err != nil && ctx.Err() != nil {
			return nil
		}
	}
}

// serveTCP echoes every accepted connection's bytes back until the peer
// closes, the connection idles for l4Idle, or ctx is done. It closes ln and
// waits for its connection goroutines before returning.
func serveTCP(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	sem := make(chan struct{}, maxTCPConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("tcp echo accept: %w", err)
		}
		select {
		case sem <- struct{}{}:
		default:
			_ = c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			echoConn(ctx, c)
		}()
	}
}

func echoConn(ctx context.Context, c net.Conn) {
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		_ = c.SetDeadline(time.Now().Add(l4Idle))
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
