package server

import (
	"fmt"
	"net"
	"syscall"
)

// keepAliveIdle is the idle time after which the kernel probes a client
// connection, in seconds.
const keepAliveIdle = 30

// listenConfig turns TCP keep-alive on (keepAliveIdle, the kernel's probe
// interval and count) on the listening socket, before it listens, and off
// in Go's accept path: Linux copies SO_KEEPALIVE and TCP_KEEPIDLE from the
// listener to every accepted socket, so accepting costs no setsockopt for
// keep-alive, where Go's per-connection keep-alive costs two to four on
// every connection of a reconnect-heavy load. (TCP_NODELAY, inherited too,
// Go sets on every accepted connection anyway.)
func listenConfig() net.ListenConfig {
	return net.ListenConfig{KeepAlive: -1, Control: listenKeepAlive}
}

// listenKeepAlive is the listening socket's net.ListenConfig.Control.
func listenKeepAlive(_, _ string, rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
		if err == nil {
			err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepAliveIdle)
		}
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("TCP keep-alive on the listening socket: %w", err)
	}
	return nil
}
