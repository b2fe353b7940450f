package testkit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSelfSignedServes(t *testing.T) {
	c := SelfSigned(t, "a.example.com", "b.example.com")
	if c.Leaf.Subject.CommonName != "a.example.com" || len(c.Leaf.DNSNames) != 2 {
		t.Fatalf("leaf %v %v", c.Leaf.Subject, c.Leaf.DNSNames)
	}
	if err := c.Leaf.VerifyHostname("b.example.com"); err != nil {
		t.Fatal(err)
	}
	ip := NewCert(t, Spec{Names: []string{"x"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err := ip.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatalf("IP SAN: %v", err)
	}
	if _, err := tls.X509KeyPair(NewCert(t, Spec{Names: []string{"x"}}).CertPEM, NewCert(t, Spec{Names: []string{"x"}}).KeyPEM); err == nil {
		t.Fatal("a key of another certificate was accepted: the PEM pair is not what it says")
	}
	p := NewCert(t, Spec{Names: []string{"x"}})
	if _, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		t.Fatalf("PEM pair: %v", err)
	}
}

func TestCAIssues(t *testing.T) {
	ca := NewCA(t, "test CA")
	leaf := ca.Issue(t, "svc.example.com")
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "svc.example.com", Roots: ca.Pool}); err != nil {
		t.Fatalf("issued certificate does not verify against the CA: %v", err)
	}
	other := NewCA(t, "other CA")
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool}); err == nil {
		t.Fatal("verified against a CA that did not issue it")
	}
	cl := NewCert(t, Spec{CommonName: "client", Issuer: ca, Client: true})
	if _, err := cl.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
}

func TestSpecFields(t *testing.T) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	nb := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewCert(t, Spec{Names: []string{"e"}, Key: k, Serial: 7, NotBefore: nb, NotAfter: nb.Add(time.Hour)})
	if c.Leaf.SerialNumber.Int64() != 7 || !c.Leaf.NotBefore.Equal(nb) || !c.Leaf.NotAfter.Equal(nb.Add(time.Hour)) {
		t.Fatalf("serial %v validity %v..%v", c.Leaf.SerialNumber, c.Leaf.NotBefore, c.Leaf.NotAfter)
	}
	if c.Leaf.PublicKeyAlgorithm != x509.Ed25519 {
		t.Fatalf("key algorithm %v", c.Leaf.PublicKeyAlgorithm)
	}
}

func TestUntil(t *testing.T) {
	var n atomic.Int32
	go func() {
		for n.Load() < 3 {
			n.Add(1)
		}
	}()
	WaitFor(t, 10*time.Second, "counter at 3", func() bool { return n.Load() >= 3 })
	start := time.Now()
	if err := Until(20*time.Millisecond, func() bool { return false }); err == nil {
		t.Fatal("Until returned nil for a condition that never holds")
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("Until gave up before its timeout")
	}
}

// fatalRecorder is a testing.TB whose Fatalf records instead of stopping.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	if f.msg == "" {
		f.msg = fmt.Sprintf(format, args...)
	}
}

func TestRequireRootFailsLoudly(t *testing.T) {
	r := &fatalRecorder{TB: t}
	RequireRoot(r, "a namespace", "sh", "no-such-tool-meshgate")
	if os.Geteuid() != 0 {
		if !strings.Contains(r.msg, "needs root") {
			t.Fatalf("not root, message %q", r.msg)
		}
		return
	}
	if !strings.Contains(r.msg, "a namespace") || !strings.Contains(r.msg, "no-such-tool-meshgate") || strings.Contains(r.msg, "sh,") {
		t.Fatalf("missing tool reported as %q", r.msg)
	}
	ok := &fatalRecorder{TB: t}
	RequireRoot(ok, "a namespace", "sh")
	if ok.msg != "" {
		t.Fatalf("root with sh on PATH failed: %s", ok.msg)
	}
}

func TestFreePort(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		p := FreePort(t, network)
		if p <= 0 || p > 65535 {
			t.Fatalf("%s: port %d", network, p)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		var err error
		if network == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", addr); err == nil {
				pc.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen("tcp", addr); err == nil {
				ln.Close()
			}
		}
		if err != nil {
			t.Errorf("%s port %d not bindable: %v", network, p, err)
		}
	}
}

func TestMetricSum(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_total", Help: "t"}, []string{"a", "b"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_seconds", Help: "t"})
	reg.MustRegister(c, h)
	c.WithLabelValues("x", "1").Add(2)
	c.WithLabelValues("x", "2").Add(3)
	c.WithLabelValues("y", "1").Add(5)
	h.Observe(1)
	h.Observe(2)
	for _, tc := range []struct {
		name  string
		want  map[string]string
		sum   float64
		count int
	}{
		{"t_total", nil, 10, 3},
		{"t_total", map[string]string{"a": "x"}, 5, 2},
		{"t_total", map[string]string{"a": "x", "b": "1"}, 2, 1},
		{"t_total", map[string]string{"a": "z"}, 0, 0},
		{"t_seconds", nil, 2, 1},
		{"absent", nil, 0, 0},
	} {
		if sum, n := MetricSum(t, reg, tc.name, tc.want); sum != tc.sum || n != tc.count {
			t.Errorf("MetricSum(%s, %v) = %v, %d; want %v, %d", tc.name, tc.want, sum, n, tc.sum, tc.count)
		}
	}
	if v := MetricValue(t, reg, "t_total", map[string]string{"a": "y"}); v != 5 {
		t.Errorf("MetricValue = %v", v)
	}
}

func TestBackground(t *testing.T) {
	var ran atomic.Bool
	t.Run("runs until cleanup", func(t *testing.T) {
		stopped := Background(t, "worker", 5*time.Second, func(ctx context.Context) error {
			ran.Store(true)
			<-ctx.Done()
			return nil
		})
		select {
		case <-stopped:
			t.Fatal("stopped before cleanup")
		default:
		}
	})
	if !ran.Load() {
		t.Fatal("run never ran")
	}
	// An early return closes the channel at once.
	stopped := Background(t, "early", 5*time.Second, func(context.Context) error { return nil })
	<-stopped
}
