package server

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// TestAcceptedConnsInheritKeepAlive checks what listenConfig relies on: a
// socket accepted from its listener has TCP keep-alive on with
// keepAliveIdle, though Go's accept path set nothing.
func TestAcceptedConnsInheritKeepAlive(t *testing.T) {
	lc := listenConfig()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle int
	var errOn, errIdle error
	if err := rc.Control(func(fd uintptr) {
		on, errOn = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle, errIdle = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
	}); err != nil {
		t.Fatal(err)
	}
	if errOn != nil || errIdle != nil {
		t.Fatal(errOn, errIdle)
	}
	if on != 1 || idle != keepAliveIdle {
		t.Fatalf("accepted socket: SO_KEEPALIVE %d, TCP_KEEPIDLE %d; want 1, %d", on, idle, keepAliveIdle)
	}
}
