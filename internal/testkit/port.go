package testkit

import (
	"net"
	"testing"
)

// FreePort returns a port that was free on 127.0.0.1 for network ("tcp"
// or "udp") a moment ago; it fails t when none can be had. Another process
// may take it before the caller binds it.
func FreePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
