package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HAProxy is a TCP-mode balancer in front of a set of servers: the
// stand-in for a cloud network load balancer.
type HAProxy struct {
	// Addr spreads connections over every server, round robin.
	Addr string
	// Direct[i] forwards every connection to server i only (same PROXY
	// header treatment), for tests that must reach one replica.
	Direct []string
	Proc   *Proc
}

// StartHAProxy listens on ip (free ports) and forwards TCP connections to
// servers, prefixing a PROXY v2 header when sendProxy is set. A refused
// connection is retried and redispatched to another server, as cloud
// balancers do after a health check fails.
func StartHAProxy(t T, dir, name, ip string, servers []string, sendProxy bool) (*HAProxy, error) {
	t.Helper()
	return StartHAProxyIdle(t, dir, name, ip, servers, sendProxy, 30*time.Second)
}

// StartHAProxyIdle is StartHAProxy closing client and server connections
// idle for idle (whole seconds), for tests that need a balancer's idle
// timeout to close a client's connections.
func StartHAProxyIdle(t T, dir, name, ip string, servers []string, sendProxy bool, idle time.Duration) (*HAProxy, error) {
	t.Helper()
	idleS := max(1, int(idle/time.Second))
	if err := RequireTools("haproxy"); err != nil {
		return nil, err
	}
	h := &HAProxy{}
	var err error
	if h.Addr, err = FreeAddr(ip); err != nil {
		return nil, err
	}
	opt := ""
	if sendProxy {
		opt = " send-proxy-v2"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 4000
    nbthread 1
defaults
    mode tcp
    timeout connect 2s
    timeout client %[2]ds
    timeout server %[2]ds
    retries 2
    option redispatch
frontend rr
    bind %[1]s
    default_backend rr
backend rr
    balance roundrobin
`, h.Addr, idleS)
	for i, s := range servers {
		fmt.Fprintf(&b, "    server s%d %s%s\n", i+1, s, opt)
	}
	for i, s := range servers {
		d, err := FreeAddr(ip)
		if err != nil {
			return nil, err
		}
		h.Direct = append(h.Direct, d)
		fmt.Fprintf(&b, "listen direct%d\n    bind %s\n    server s%d %s%s\n", i+1, d, i+1, s, opt)
	}
	cfg := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	p, err := Start(t, dir, name, "haproxy", "-db", "-f", cfg)
	if err != nil {
		return nil, err
	}
	h.Proc = p
	for _, a := range append([]string{h.Addr}, h.Direct...) {
		if err := WaitTCP(a, 5*time.Second); err != nil {
			return nil, fmt.Errorf("haproxy: %w; log:\n%s", err, p.Tail(2000))
		}
	}
	return h, nil
}
