package fault

// Needs root and iproute2 (ip, tc): the partition test builds network
// namespaces, veth links and a bridge; testkit.RequireRoot checks both and
// fails loudly.

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

// netTopo is the network the partition test builds: per replica a network
// namespace with two veth links to the root namespace. The mesh link
// (mesh0, 198.18.0.1x/24) is a port of a bridge in the root namespace,
// which holds 198.18.0.1 for the test's own mesh node; the control link
// (ctl0, 198.19.i.2/30, root side 198.19.i.1) carries the replica's HTTPS
// and metrics listeners, so the test can drive and observe a replica whose
// mesh link is cut.
type netTopo struct {
	prefix string // interface and namespace name prefix, unique per run
	bridge string
	n      int
}

func (nt *netTopo) ns(i int) string       { return fmt.Sprintf("%sr%d", nt.prefix, i) }
func (nt *netTopo) meshPort(i int) string { return fmt.Sprintf("%sm%d", nt.prefix, i) }
func (nt *netTopo) ctlPort(i int) string  { return fmt.Sprintf("%sc%d", nt.prefix, i) }
func (nt *netTopo) meshIP(i int) string   { return fmt.Sprintf("198.18.0.%d", 10+i) }
func (nt *netTopo) ctlIP(i int) string    { return fmt.Sprintf("198.19.%d.2", i) }

// run executes one ip(8) command.
func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newTopo creates the namespaces, links and bridge for n replicas. Its
// cleanup (registered first, so it runs after the processes are killed)
// deletes them even if creation failed half-way.
func newTopo(t *testing.T, n int) *netTopo {
	t.Helper()
	testkit.RequireRoot(t, "the partition test's network namespaces", "ip", "tc")
	nt := &netTopo{prefix: fmt.Sprintf("mgf%d", os.Getpid()%100000), n: n}
	nt.bridge = nt.prefix + "b"
	// A run that was killed left its namespaces and bridge behind, with the
	// same fixed addresses: remove them first, or their routes shadow ours.
	if err := removeStaleTopos(nt.prefix); err != nil {
		t.Fatalf("remove a crashed run's network: %v", err)
	}
	t.Cleanup(func() {
		for i := 1; i <= n; i++ {
			_ = run("ip", "netns", "del", nt.ns(i)) // deletes the veths with it
		}
		_ = run("ip", "link", "del", nt.bridge)
	})
	cmds := [][]string{
		{"ip", "link", "add", nt.bridge, "type", "bridge"},
		{"ip", "addr", "add", "198.18.0.1/24", "dev", nt.bridge},
		{"ip", "link", "set", nt.bridge, "up"},
	}
	for i := 1; i <= n; i++ {
		ns := nt.ns(i)
		x := func(args ...string) []string { return append([]string{"ip", "-n", ns}, args...) }
		cmds = append(cmds,
			[]string{"ip", "netns", "add", ns},
			x("link", "set", "lo", "up"),
			[]string{"ip", "link", "add", nt.meshPort(i), "type", "veth", "peer", "name", "mesh0", "netns", ns},
			[]string{"ip", "link", "set", nt.meshPort(i), "master", nt.bridge, "up"},
			x("addr", "add", nt.meshIP(i)+"/24", "dev", "mesh0"),
			x("link", "set", "mesh0", "up"),
			[]string{"ip", "link", "add", nt.ctlPort(i), "type", "veth", "peer", "name", "ctl0", "netns", ns},
			[]string{"ip", "addr", "add", fmt.Sprintf("198.19.%d.1/30", i), "dev", nt.ctlPort(i)},
			[]string{"ip", "link", "set", nt.ctlPort(i), "up"},
			x("addr", "add", nt.ctlIP(i)+"/30", "dev", "ctl0"),
			x("link", "set", "ctl0", "up"),
		)
	}
	for _, c := range cmds {
		if err := run(c...); err != nil {
			t.Fatalf("build network: %v", err)
		}
	}
	return nt
}

// startNSCluster starts replica i in namespace i: HTTPS and metrics on
// ctl0, mesh on mesh0, every mesh address as a static peer.
func startNSCluster(t *testing.T, s *scenario, nt *netTopo) ([]*harness.Replica, string) {
	t.Helper()
	meshDir := s.dir + "/mesh-ca"
	if out, err := exec.Command(s.bins.Meshgate, "mesh-ca", "--out", meshDir).CombinedOutput(); err != nil {
		t.Fatalf("meshgate mesh-ca: %v\n%s", err, out)
	}
	var peers []string
	for i := 1; i <= nt.n; i++ {
		peers = append(peers, nt.meshIP(i)+":7946")
	}
	var rs []*harness.Replica
	for i := 1; i <= nt.n; i++ {
		r := &harness.Replica{Name: fmt.Sprintf("replica-%d", i), IP: nt.ctlIP(i),
			HTTPSAddr: nt.ctlIP(i) + ":8443", HTTPAddr: nt.ctlIP(i) + ":8080",
			MetricsAddr: nt.ctlIP(i) + ":9090", MeshAddr: peers[i-1]}
		p, err := harness.Start(t, s.dir, r.Name, "ip", "netns", "exec", nt.ns(i), s.bins.Meshgate,
			"standalone", "--manifests", s.manifest, "--https-addr", r.HTTPSAddr,
			"--http-addr", r.HTTPAddr, "--metrics-addr", r.MetricsAddr, "--node-name", r.Name,
			"--mesh-addr", r.MeshAddr, "--shutdown-grace", "2s",
			"--peers", strings.Join(peers, ","), "--mesh-dir", meshDir)
		if err != nil {
			t.Fatal(err)
		}
		r.Proc = p
		rs = append(rs, r)
	}
	for _, r := range rs {
		if err := r.WaitReady(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return rs, meshDir
}

// handshakes makes n TLS 1.3 handshakes to addr with fresh clients, each
// making the replica issue (and replicate) a session.
func handshakes(t *testing.T, s *scenario, addr string, n int) {
	t.Helper()
	for range n {
		cfg, err := s.pki.ClientConfig(tls.VersionTLS13)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			t.Fatalf("handshake with %s: %v", addr, err)
		}
		_ = c.Close()
	}
}

// TestPartitionHeal isolates replica 3's mesh link from the other two
// replicas (bridge port down: packets vanish, no reset), adds sessions on
// both sides of the partition, heals, and measures how long until every
// replica holds the same number of records. Replica 3 only gets the
// majority's sessions through the re-sync after the partition: the
// synthetic records come from a mesh node connected to replicas 1 and 2
// only, and replicas do not forward what they receive.
func TestPartitionHeal(t *testing.T) {
	nt := newTopo(t, 3)
	s := newScenario(t, "198.18.0.1:9") // backend unused: only handshakes
	rs, meshDir := startNSCluster(t, s, nt)
	k := 2 // replica-3
	l := startLoader(t, meshDir, "198.18.0.1", []string{rs[0].MeshAddr, rs[1].MeshAddr})

	// Round 1: plain heal. Round 2: the healed link is slow (tbf, 50 Mbit/s
	// each way; this kernel has no sch_netem for added delay), so the cost
	// of the re-sync's full snapshot shows.
	partitionRound(t, s, nt, rs, l, k, "", 20_000, 200)
	partitionRound(t, s, nt, rs, l, k, "50mbit", 20_000, 200)
}

// partitionRound cuts replica k's mesh link, adds synthetic sessions on
// the majority side and real ones on k, heals (shaping the link to rate
// when not empty) and measures convergence.
func partitionRound(t *testing.T, s *scenario, nt *netTopo, rs []*harness.Replica, l *loader, k int, rate string, synthetic, real int) {
	t.Helper()
	port := nt.meshPort(k + 1)
	start := make([]int64, len(rs))
	for i, r := range rs {
		start[i] = records(r)
	}
	if err := run("ip", "link", "set", port, "down"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	l.insert(t, synthetic)
	handshakes(t, s, rs[k].HTTPSAddr, real)
	waitUntil(t, "both sides see the partition", 15*time.Second, func() bool {
		for i, r := range rs {
			st, err := status(r)
			want := 1 // the other majority replica
			if i == k {
				want = 0
			}
			if err != nil || st.Mesh.PeersOnline != want {
				return false
			}
		}
		return true
	})
	during := make([]int64, len(rs))
	for i, r := range rs {
		during[i] = records(r)
	}
	st0, err := status(rs[k])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FAULT: partition of %s (bridge port down) %v; records during: %v", rs[k].Name, time.Since(cut).Round(time.Millisecond), during)
	if during[k] >= during[0] {
		t.Fatalf("isolated replica already holds the majority's records: %v", during)
	}
	link := "full speed"
	if rate != "" {
		link = rate + " each way (tbf)"
		shape := []string{"root", "tbf", "rate", rate, "burst", "256kb", "latency", "200ms"}
		for _, c := range [][]string{
			append([]string{"tc", "qdisc", "add", "dev", port}, shape...),
			append([]string{"ip", "netns", "exec", nt.ns(k + 1), "tc", "qdisc", "add", "dev", "mesh0"}, shape...),
		} {
			if err := run(c...); err != nil {
				t.Fatalf("shape link: %v", err)
			}
		}
	}
	if err := run("ip", "link", "set", port, "up"); err != nil {
		t.Fatal(err)
	}
	var counts []int64
	took := waitUntil(t, "records equal on every replica after heal", 45*time.Second, func() bool {
		counts = counts[:0]
		for _, r := range rs {
			counts = append(counts, records(r))
		}
		return counts[0] > 0 && counts[0] == counts[1] && counts[1] == counts[2]
	})
	st, err := status(rs[k])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FAULT: partition-heal convergence %v after link up (%s): %d records on every replica (%d synthetic added on the majority side, %d handshakes on the isolated side); re-sync snapshots received by %s: %d",
		took.Round(time.Millisecond), link, counts[0], synthetic, real, rs[k].Name, st.Mesh.Resyncs-st0.Mesh.Resyncs)
	if want := start[0] + int64(synthetic+real); counts[0] < want {
		t.Errorf("converged on %d records, want at least %d", counts[0], want)
	}
	if st.Mesh.Resyncs == st0.Mesh.Resyncs {
		t.Errorf("%s converged without a re-sync", rs[k].Name)
	}
}

// staleTopo matches the namespaces and bridges newTopo creates.
var staleTopo = regexp.MustCompile(`^(mgf[0-9]+)(r[0-9]+|b)$`)

// removeStaleTopos deletes every network namespace and bridge named like
// newTopo's that does not belong to prefix (this process).
func removeStaleTopos(prefix string) error {
	nss, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	for _, line := range strings.Split(string(nss), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if m := staleTopo.FindStringSubmatch(f[0]); m != nil && m[1] != prefix {
			if err := run("ip", "netns", "del", f[0]); err != nil {
				return err
			}
		}
	}
	links, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output()
	if err != nil {
		return fmt.Errorf("ip link show: %w", err)
	}
	for _, line := range strings.Split(string(links), "\n") {
		// "12: mgf123b: <BROADCAST,...": the name is the second field.
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if m := staleTopo.FindStringSubmatch(name); m != nil && m[2] == "b" && m[1] != prefix {
			if err := run("ip", "link", "del", name); err != nil {
				return err
			}
		}
	}
	return nil
}
