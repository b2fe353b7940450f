package harness

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/meshgate/meshgate/internal/source/manifest"
)

func TestSumMetric(t *testing.T) {
	body := `# HELP meshgate_x_total x.
# TYPE meshgate_x_total counter
meshgate_x_total{kind="full",version="1.3"} 3
meshgate_x_total{kind="resumed",version="1.3"} 4.5
meshgate_x_total_other 100
meshgate_x_totalish{kind="full"} 50
meshgate_y 7
`
	for _, tc := range []struct {
		name, labels string
		want         float64
	}{
		{"meshgate_x_total", "", 7.5},
		{"meshgate_x_total", `kind="full"`, 3},
		{"meshgate_x_total", `version="1.3"`, 7.5},
		{"meshgate_x_total", `kind="none"`, 0},
		{"meshgate_y", "", 7},
		{"meshgate_y", `kind="full"`, 0},
		{"meshgate_z", "", 0},
	} {
		if got := SumMetric(body, tc.name, tc.labels); got != tc.want {
			t.Errorf("SumMetric(%s, %q) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestRSSKiB(t *testing.T) {
	n, err := RSSKiB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 {
		t.Fatalf("RSSKiB(self) = %d, want > 0", n)
	}
	if _, err := RSSKiB(-1); err == nil {
		t.Fatal("RSSKiB(-1) succeeded")
	}
}

func TestEstablishedTo(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	count := func() int {
		n, err := EstablishedTo(addr)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("before dialling: %d established to %s", n, addr)
	}
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("one connection: %d established to %s", n, addr)
	}
	// The server closes: the client's side goes to CLOSE_WAIT once the
	// FIN arrives, and no longer counts.
	s.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after the server closed succeeded")
	}
	if n := count(); n != 0 {
		t.Fatalf("after the server closed: %d established to %s", n, addr)
	}
	c.Close()
	if _, err := EstablishedTo("[::1]:80"); err == nil {
		t.Fatal("IPv6 address accepted")
	}
}

// TestManifestsLoad writes the scenario manifests with one more TLS host
// and reads them back with the loader meshgate standalone uses.
func TestManifestsLoad(t *testing.T) {
	dir := t.TempDir()
	secret := func(name string) string {
		p := filepath.Join(dir, name+".yaml")
		y := "apiVersion: v1\nkind: Secret\nmetadata: {name: " + name + ", namespace: default}\ntype: kubernetes.io/tls\nstringData: {tls.crt: \"x\", tls.key: \"k\"}\n"
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	out, err := Manifests{EchoAddr: "127.0.0.10:9000", SecretYAML: secret("echo-tls"),
		TLSHosts: []TLSHost{{Host: "ecdsa.meshgate.test", SecretName: "ecdsa-tls", SecretYAML: secret("ecdsa-tls")}}}.Write(filepath.Join(dir, "m"))
	if err != nil {
		t.Fatal(err)
	}
	objs, skipped, err := manifest.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 0 {
		t.Fatalf("skipped: %v", skipped)
	}
	hosts := map[string]string{} // host -> TLS secret
	var secrets []string
	for _, o := range objs {
		switch v := o.(type) {
		case *networkingv1.Ingress:
			for _, r := range v.Spec.Rules {
				hosts[r.Host] = v.Spec.TLS[0].SecretName
			}
		case *corev1.Secret:
			secrets = append(secrets, v.Name)
		}
	}
	want := map[string]string{Host: "echo-tls", OtherHost: "echo-tls", "ecdsa.meshgate.test": "ecdsa-tls"}
	if !maps.Equal(hosts, want) {
		t.Errorf("hosts %v, want %v", hosts, want)
	}
	slices.Sort(secrets)
	if !slices.Equal(secrets, []string{"ecdsa-tls", "echo-tls"}) {
		t.Errorf("secrets %v", secrets)
	}
}

// TestManifestsFromSamples checks that Write serves the demo's sample
// objects pointed at the scenario's backends, with the L4 objects only when
// asked for.
func TestManifestsFromSamples(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(secret, []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: echo-tls, namespace: default}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x, tls.key: k}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    Manifests
		l4   map[string]string
	}{
		{"http only", Manifests{EchoAddr: "127.0.0.10:9100", SecretYAML: secret}, nil},
		{"udp and tcp", Manifests{EchoAddr: "127.0.0.10:9100", SecretYAML: secret,
			UDPPort: 5400, UDPBackend: "127.0.0.12:9153", TCPPort: 5401, TCPBackend: "127.0.0.13:9154"},
			map[string]string{"udp.5400": "default/udp-echo:5353", "tcp.5401": "default/echo-tcp:echo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.m.Write(filepath.Join(dir, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			objs, skipped, err := manifest.Load(out)
			if err != nil || len(skipped) != 0 {
				t.Fatalf("load: %v, skipped %v", err, skipped)
			}
			endpoints := map[string]string{} // EndpointSlice -> addr:port
			var l4 map[string]string
			var classes []string
			for _, o := range objs {
				switch v := o.(type) {
				case *discoveryv1.EndpointSlice:
					endpoints[v.Name] = fmt.Sprintf("%s:%d", v.Endpoints[0].Addresses[0], *v.Ports[0].Port)
				case *corev1.ConfigMap:
					l4 = v.Data
				case *networkingv1.IngressClass:
					classes = append(classes, v.Name+"="+v.Spec.Controller)
				}
			}
			want := map[string]string{"echo-1": "127.0.0.10:9100"}
			if tc.l4 != nil {
				want["udp-echo-1"] = "127.0.0.12:9153"
				want["echo-tcp-1"] = "127.0.0.13:9154"
			}
			if !maps.Equal(endpoints, want) {
				t.Errorf("endpoints %v, want %v", endpoints, want)
			}
			if !maps.Equal(l4, tc.l4) {
				t.Errorf("L4 ConfigMap %v, want %v", l4, tc.l4)
			}
			if !slices.Equal(classes, []string{"meshgate=meshgate.io/ingress-controller"}) {
				t.Errorf("IngressClasses %v", classes)
			}
		})
	}
}

func TestFreeAddrsDistinct(t *testing.T) {
	addrs, err := FreeAddrs("127.0.0.1", 20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s returned twice in %v", a, addrs)
		}
		seen[a] = true
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s not free after FreeAddrs: %v", a, err)
		}
		ln.Close()
	}
}

// The /proc readers of a process group find this test's own group, and
// report an error for a group with no live process.
func TestGroupCounters(t *testing.T) {
	pg := syscall.Getpgrp()
	if _, err := GroupCPUTicks(pg); err != nil {
		t.Fatal(err)
	}
	a, err := GroupActivity(pg)
	if err != nil {
		t.Fatal(err)
	}
	if a.ReadCalls == 0 || a.CtxSwitches == 0 {
		t.Fatalf("activity of a live group: %+v", a)
	}
	const none = 1 << 30 // beyond pid_max: no such group
	if _, err := GroupCPUTicks(none); err == nil {
		t.Fatal("GroupCPUTicks of an empty group: no error")
	}
	if _, err := GroupActivity(none); err == nil {
		t.Fatal("GroupActivity of an empty group: no error")
	}
}
