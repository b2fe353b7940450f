package nodeagent

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Network says where Pods live on the host. The zero value is
// DefaultNetwork.
type Network struct {
	// PodCIDR is the Pod range. Its first address belongs to the host
	// (bridge address, Pod default gateway, kubelet endpoint); Pods get
	// the others.
	PodCIDR netip.Prefix
	// ServiceCIDR, when valid, gets an "unreachable" route on the host, so
	// that traffic to a Service ClusterIP (nothing routes it: there is no
	// kube-proxy) fails at once instead of leaving the machine. It must
	// match the API server's --service-cluster-ip-range.
	ServiceCIDR netip.Prefix
	// Prefix starts the name of everything created on the host: the bridge
	// (<Prefix>br0), the network namespaces (<Prefix>-<id>) and the host
	// ends of the veth pairs (<Prefix><id>). At most 5 characters, so
	// interface names stay within Linux's 15.
	Prefix string
}

// DefaultNetwork is the test cluster's reservation inside 198.18.0.0/15:
// Pods on 198.18.128.0/17, Services on 198.18.96.0/20. Other suites of the
// repository use 198.18.0.0/24 and 198.19.0.0/16.
var DefaultNetwork = Network{
	PodCIDR:     netip.MustParsePrefix("198.18.128.0/17"),
	ServiceCIDR: netip.MustParsePrefix("198.18.96.0/20"),
	Prefix:      "mgna",
}

func (n Network) withDefaults() (Network, error) {
	if !n.PodCIDR.IsValid() {
		n.PodCIDR = DefaultNetwork.PodCIDR
		if !n.ServiceCIDR.IsValid() {
			n.ServiceCIDR = DefaultNetwork.ServiceCIDR
		}
	}
	if n.Prefix == "" {
		n.Prefix = DefaultNetwork.Prefix
	}
	if len(n.Prefix) > 5 {
		return n, fmt.Errorf("network prefix %q longer than 5 characters", n.Prefix)
	}
	if !n.PodCIDR.Addr().Is4() || n.PodCIDR.Bits() < 16 || n.PodCIDR.Bits() > 30 {
		return n, fmt.Errorf("pod CIDR %s: want an IPv4 prefix between /16 and /30", n.PodCIDR)
	}
	n.PodCIDR = n.PodCIDR.Masked()
	return n, nil
}

// HostIP is the host's address in the Pod range (the bridge's).
func (n Network) HostIP() netip.Addr { return n.PodCIDR.Addr().Next() }

func (n Network) bridge() string { return n.Prefix + "br0" }

// podID names a Pod's namespace and veth after the host part of its IP, in
// hex: unique while the IP is allocated, and short.
func (n Network) podID(ip netip.Addr) string {
	a, base := ip.As4(), n.PodCIDR.Addr().As4()
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) -
		(uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3]))
	return strconv.FormatUint(uint64(v), 16)
}

func (n Network) netnsName(ip netip.Addr) string { return n.Prefix + "-" + n.podID(ip) }
func (n Network) vethName(ip netip.Addr) string  { return n.Prefix + n.podID(ip) }

// netnsPath is where `ip netns` keeps a named namespace.
func netnsPath(name string) string { return "/var/run/netns/" + name }

// ipBatch runs `ip [-n netns] -batch -` with the given command lines.
func ipBatch(netns string, lines ...string) error {
	args := []string{"-batch", "-"}
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s\n%s", strings.Join(args, " "), err, bytes.TrimSpace(out), strings.Join(lines, "\n"))
	}
	return nil
}

// setupHost removes what a crashed run left behind and creates the bridge
// (and the Service route).
func (n Network) setupHost() error {
	if os.Geteuid() != 0 {
		return errors.New("nodeagent: Pod network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("nodeagent: iproute2's ip is required (hack/install-deps.sh installs it): %w", err)
	}
	if err := n.cleanupHost(); err != nil {
		return err
	}
	lines := []string{
		"link add " + n.bridge() + " type bridge",
		fmt.Sprintf("addr add %s/%d dev %s", n.HostIP(), n.PodCIDR.Bits(), n.bridge()),
		"link set " + n.bridge() + " up",
	}
	if n.ServiceCIDR.IsValid() {
		lines = append(lines, "route add unreachable "+n.ServiceCIDR.Masked().String())
	}
	return ipBatch("", lines...)
}

// cleanupHost kills every process left in one of our namespaces, deletes
// the namespaces, our veths, the bridge and the Service route. Missing
// pieces are not errors.
func (n Network) cleanupHost() error {
	ents, err := os.ReadDir("/var/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("nodeagent: list network namespaces: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), n.Prefix+"-") {
			errs = append(errs, deleteNetns(e.Name()))
		}
	}
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return fmt.Errorf("nodeagent: ip link show: %w", err)
	}
	for _, name := range linkNames(string(out)) {
		if strings.HasPrefix(name, n.Prefix) {
			_ = exec.Command("ip", "link", "del", name).Run() // gone with its namespace peer, often
		}
	}
	if n.ServiceCIDR.IsValid() {
		_ = exec.Command("ip", "route", "del", "unreachable", n.ServiceCIDR.Masked().String()).Run()
	}
	return errors.Join(errs...)
}

// linkNames parses `ip -o link show`: "2: name@peer: <...> ...".
func linkNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, ": ", 3)
		if len(f) < 3 {
			continue
		}
		name, _, _ := strings.Cut(f[1], "@")
		names = append(names, name)
	}
	return names
}

// deleteNetns kills the processes inside namespace name and deletes it.
func deleteNetns(name string) error {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		if _, serr := os.Stat(netnsPath(name)); errors.Is(serr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// setupPod creates the Pod's namespace with eth0 at ip, lo up and a
// default route via the host.
func (n Network) setupPod(ip netip.Addr) (netns string, err error) {
	netns, veth := n.netnsName(ip), n.vethName(ip)
	_ = deleteNetns(netns) // a leftover of this very address
	if err := ipBatch("",
		"netns add "+netns,
		"link add "+veth+" type veth peer name "+veth+"p netns "+netns,
		"link set "+veth+" master "+n.bridge()+" up",
	); err != nil {
		_ = deleteNetns(netns)
		return "", err
	}
	if err := ipBatch(netns,
		"link set "+veth+"p name eth0",
		fmt.Sprintf("addr add %s/%d dev eth0", ip, n.PodCIDR.Bits()),
		"link set eth0 up",
		"link set lo up",
		"route add default via "+n.HostIP().String(),
	); err != nil {
		_ = deleteNetns(netns)
		return "", err
	}
	return netns, nil
}

// ipPool hands out Pod addresses in order, wrapping around, never one in
// use. Safe for concurrent use.
type ipPool struct {
	mu     sync.Mutex
	prefix netip.Prefix
	next   netip.Addr
	inUse  map[netip.Addr]bool
}

func newIPPool(p netip.Prefix) *ipPool {
	first := p.Addr().Next().Next() // network address and host skipped
	return &ipPool{prefix: p, next: first, inUse: map[netip.Addr]bool{}}
}

func (p *ipPool) first() netip.Addr { return p.prefix.Addr().Next().Next() }

// get returns a free address; an error when the range is full.
func (p *ipPool) get() (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := p.next
	for {
		a := p.next
		p.next = a.Next()
		if !p.prefix.Contains(p.next) || p.next == lastAddr(p.prefix) {
			p.next = p.first()
		}
		if !p.inUse[a] {
			p.inUse[a] = true
			return a, nil
		}
		if p.next == start {
			return netip.Addr{}, fmt.Errorf("pod range %s exhausted", p.prefix)
		}
	}
}

func (p *ipPool) put(a netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.inUse, a)
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
