package harness

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// EstablishedTo counts the TCP connections of this network namespace, of
// any process, in state ESTABLISHED whose remote end is addr (an IPv4
// ip:port), from /proc/net/tcp. A connection the server closed and the
// client has not yet closed is in CLOSE_WAIT on the client's side and is
// not counted, so tests wait on this for a balancer's idle timeout instead
// of sleeping past it.
func EstablishedTo(addr string) (int, error) {
	want, err := netip.ParseAddrPort(addr)
	if err != nil || !want.Addr().Is4() {
		return 0, fmt.Errorf("established: %q is not an IPv4 ip:port", addr)
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, fmt.Errorf("established: %w", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st ...
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || fs[3] != "01" {
			continue
		}
		if ap, ok := parseProcAddr(fs[2]); ok && ap == want {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("established: %w", err)
	}
	return n, nil
}

// parseProcAddr decodes /proc/net/tcp's "0100007F:1F90": the kernel
// prints the address's four bytes, as they are in memory, as one
// native-endian 32-bit hex number, and the port in hex.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	ip, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	v, err := strconv.ParseUint(ip, 16, 32)
	if err != nil {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	var a [4]byte
	binary.NativeEndian.PutUint32(a[:], uint32(v))
	return netip.AddrPortFrom(netip.AddrFrom4(a), uint16(p)), true
}
