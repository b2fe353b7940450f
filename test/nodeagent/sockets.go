package nodeagent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// boundPort is a socket a container has bound: TCP in LISTEN state, or any
// bound UDP socket.
type boundPort struct {
	proto string // "TCP" or "UDP" (corev1.Protocol values)
	port  int
}

// boundPorts reads the sockets of pid's network namespace from
// /proc/<pid>/net/{tcp,tcp6,udp,udp6}.
func boundPorts(pid int) (map[boundPort]bool, error) {
	out := map[boundPort]bool{}
	for _, f := range []struct{ file, proto, state string }{
		{"tcp", "TCP", "0A"}, {"tcp6", "TCP", "0A"}, {"udp", "UDP", "07"}, {"udp6", "UDP", "07"},
	} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f.file))
		if err != nil {
			if f.file == "tcp6" || f.file == "udp6" {
				continue // IPv6 disabled
			}
			return nil, fmt.Errorf("sockets of pid %d: %w", pid, err)
		}
		for _, port := range parseProcNet(string(b), f.state) {
			out[boundPort{f.proto, port}] = true
		}
	}
	return out, nil
}

// parseProcNet returns the local ports of the sockets in the given state
// (hex, "0A" = LISTEN, "07" = CLOSE, i.e. a bound UDP socket) from the text
// of a /proc/net/{tcp,udp}[6] file:
//
//	sl  local_address rem_address   st ...
//	 0: 00000000:0BB8 00000000:0000 0A ...
//
// Lines that do not parse are skipped.
func parseProcNet(text, state string) []int {
	var ports []int
	for i, line := range strings.Split(text, "\n") {
		if i == 0 {
			continue // header
		}
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != state {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || p == 0 {
			continue
		}
		ports = append(ports, int(p))
	}
	return ports
}
