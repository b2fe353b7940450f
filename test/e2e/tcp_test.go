package e2e

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// TestTCPEchoThroughL4 streams 256 KiB through each replica's L4 TCP port
// to the TCP echo backend and reads it all back after a half-close. The
// replicas run with --proxy-protocol, as behind an NLB, so the client sends
// a PROXY v2 header first, like the balancer would.
func TestTCPEchoThroughL4(t *testing.T) {
	payload := make([]byte, 256<<10)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	for _, r := range env.Cluster.Replicas {
		t.Run(r.Name, func(t *testing.T) {
			addr := net.JoinHostPort(r.IP, strconv.Itoa(tcpPort))
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("dial %s: %v", addr, err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			hdr := proxyproto.HeaderProxyFromAddrs(2,
				&net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 4242}, c.RemoteAddr())
			if _, err := hdr.WriteTo(c); err != nil {
				t.Fatalf("PROXY header: %v", err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := c.Write(payload)
				if err == nil {
					err = c.(*net.TCPConn).CloseWrite()
				}
				done <- err
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(payload))
			}
		})
	}
}
