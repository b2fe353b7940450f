//go:build !linux

package server

import (
	"net"
	"time"
)

// listenConfig sets TCP keep-alive after 30s idle with the system's probe
// interval and count on every accepted connection (Go's per-connection
// setsockopt calls; keepalive_linux.go avoids them).
func listenConfig() net.ListenConfig {
	return net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: -1, Count: -1}}
}
