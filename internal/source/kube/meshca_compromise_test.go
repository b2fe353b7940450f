package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
	"github.com/meshgate/meshgate/internal/testkit"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// meshService is the headless mesh Service startMeshReplicas publishes the
// replicas under.
func meshService(ns string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "meshgate-mesh"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{
			{Name: DefaultMeshPortName, Port: 7946, Protocol: corev1.ProtocolTCP}}}}
}

// intruder is what a compromised replica's credentials let an attacker do
// on the mesh: present a certificate it minted itself and complete the
// Hello exchange under any node name.
type intruder struct {
	ca        *pki.CA // the CA (and key) the compromised replica read
	clusterID string
}

// join dials addr, presents a certificate for name issued by in.ca, sends a
// Hello and returns the open connection once the node answered with its
// own Hello (the node accepted it as a member), or an error if the node
// refused it.
func (in *intruder) join(addr, name string) (*tls.Conn, error) {
	c, err := in.ca.IssueNode(name, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		return nil, err
	}
	raw, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }})
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	hello := wire.AppendFrame(nil, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		ClusterID: in.clusterID, NodeName: name, MeshAddr: "127.0.0.99:1"})
	if _, err := tc.Write(hello); err != nil {
		tc.Close()
		return nil, fmt.Errorf("write hello: %w", err)
	}
	msg, err := wire.NewReader(tc, 0).ReadMessage()
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	if _, ok := msg.(*wire.Hello); !ok {
		tc.Close()
		return nil, fmt.Errorf("node answered %v, not a Hello", msg.Type())
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// member is an intruder's accepted connection kept alive as a peer keeps
// its own: heartbeats well inside the node's DeadAfter (3 s), everything
// the node sends read and dropped. closed is closed once the node has
// closed the connection.
type member struct {
	tc     *tls.Conn
	closed chan struct{}
	stop   chan struct{}
}

func keepAlive(tc *tls.Conn) *member {
	m := &member{tc: tc, closed: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(m.closed)
		io.Copy(io.Discard, tc) // until the node (or Close) ends it
	}()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-m.closed:
				return
			case <-t.C:
				tc.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := tc.Write(wire.AppendFrame(nil, &wire.Heartbeat{Sent: time.Now().UnixNano()})); err != nil {
					return
				}
			}
		}
	}()
	return m
}

// Close ends the member's goroutines.
func (m *member) Close() {
	close(m.stop)
	m.tc.Close()
	<-m.closed
}

// TestMeshCACompromiseRecoverable shows what one compromised replica gives
// an attacker, and that it can be taken back without downtime. The mesh CA
// Secret every replica reads holds the CA's private key, so the attacker
// mints certificates for names of its choice (a stranger's, a live
// replica's) and the replicas accept them. Then the CA is rotated
// (RotateMeshCA, three steps, each one waited for on every replica) while
// a client keeps reconnecting round robin: no connection fails, sessions
// issued on one replica resume on the others after every step, and at the
// end every replica refuses certificates of the stolen CA and has closed
// the intruder's connection made before.
func TestMeshCACompromiseRecoverable(t *testing.T) {
	checkReplicaGoroutines(t)
	deadline := time.Now().Add(150 * time.Second)
	ns := newNamespace(t)
	bo := testBuild(t)
	const host = "app.example.com"
	meshIPs := newMeshAddrs(t)
	sec := tlsSecret(t, ns, "app-tls", host)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false), meshService(ns),
		service(ns, "app", 80), sec, // no endpoints: the data plane answers 503
		ingress(ns, "app", host, "app", &bo.IngressClass, withTLS("app-tls", host)))
	replicas := startMeshReplicas(t, ns, bo, meshIPs, deadline)
	for _, r := range replicas {
		waitUntil(t, deadline, r.name+"'s table with the TLS host", func() bool {
			tb := r.holder.Load()
			return tb != nil && certSerial(tb, host) != ""
		})
	}
	waitPeers(t, deadline, replicas, 2)

	// The compromise: what replica 3 reads at start, as every replica does.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	stolen, err := replicas[2].ctl.MeshCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := &intruder{ca: stolen, clusterID: stolen.Fingerprint()}
	names := []string{"minted-stranger", replicas[0].name}
	var held []*member               // the intruder's connections from before the rotation
	for _, r := range replicas[1:] { // replica 1 would refuse its own name as itself
		for _, name := range names {
			c, err := in.join(r.rep.Node().MeshAddr(), name)
			if err != nil {
				t.Fatalf("before the rotation %s refused %q minted with the stolen CA: %v", r.name, name, err)
			}
			held = append(held, keepAlive(c))
		}
	}
	t.Logf("before the rotation: %d certificates minted with the stolen CA key accepted by replicas 2 and 3", len(held))
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sec.Data[corev1.TLSCertKey])
	addrs := make([]string, len(replicas))
	for i, r := range replicas {
		addrs[i] = r.rep.HTTPSAddr().String()
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS13}
	traffic := startTraffic(addrs, cfg)

	nn := types.NamespacedName{Namespace: ns, Name: "meshgate-mesh-ca"}
	for _, want := range []pki.Phase{pki.PhaseTrustNew, pki.PhaseSignNew, pki.PhaseStable} {
		phase, err := RotateMeshCA(ctx, testClient, nn)
		if err != nil || phase != want {
			t.Fatalf("rotation step: phase %q, %v; want %q", phase, err, want)
		}
		gen, err := MeshCAGeneration(ctx, testClient, nn)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range replicas {
			waitUntil(t, deadline, fmt.Sprintf("%s on generation %s (%s)", r.name, gen, phase), func() bool {
				st := r.rep.Node().Status()
				return st.Trust != nil && st.Trust.Generation == gen
			})
		}
		waitPeers(t, deadline, replicas, 2)
		tries := waitIssuedByFirst(t, deadline, string(phase), addrs, cfg)
		t.Logf("phase %s (generation %s): every replica loaded it, peers online, sessions issued on replica 1 resume on 2 and 3 (%d tries)",
			phase, gen, tries)
	}
	st := traffic.stop()
	t.Logf("during the rotation: %d connections round robin, %d resumed (%.1f %%), %d failed",
		st.attempts, st.resumed, 100*float64(st.resumed)/float64(max(st.attempts, 1)), st.failed)
	if st.failed != 0 || st.attempts == 0 {
		t.Errorf("%d of %d connections failed during the rotation (first error: %v)", st.failed, st.attempts, st.firstErr)
	}

	// Recovered: the stolen CA's certificates are refused everywhere and
	// what it opened before is closed.
	for i, m := range held {
		select {
		case <-m.closed:
		case <-time.After(5 * time.Second): // Reverify closed it already; the bound catches a node that did not
			t.Errorf("intruder connection %d still open after the rotation", i)
		}
	}
	closed := 0.0
	for _, r := range replicas {
		for _, name := range names {
			if c, err := in.join(r.rep.Node().MeshAddr(), name); err == nil {
				c.Close()
				t.Errorf("after the rotation %s accepted %q minted with the stolen CA", r.name, name)
			}
		}
		v, _ := testkit.MetricSum(t, r.rep.Registry(), "meshgate_sessionmesh_rejected_connections_total", map[string]string{"reason": mesh.RejectUntrusted})
		closed += v
	}
	if closed < float64(len(held)) {
		t.Errorf("%v connections closed as untrusted after the rotation, want at least the intruder's %d", closed, len(held))
	}
}

// waitIssuedByFirst waits until a session a fresh client gets from replica
// 1 resumes on replicas 2 and 3, and returns how many fresh clients it
// took. At the last step the replicas close their old-CA connections and
// re-dial (ReconnectMin, 50 ms): a session issued inside that window may
// reach a replica late and take a full handshake there, which is what the
// retries absorb; the traffic statistics show how often it happened.
func waitIssuedByFirst(t *testing.T, deadline time.Time, what string, addrs []string, base *tls.Config) int {
	t.Helper()
	tries := 0
	err := testkit.Until(time.Until(deadline), func() bool {
		tries++
		for r := 1; r < len(addrs); r++ {
			cfg := base.Clone()
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			if _, _, err := meshReplicaGet(addrs[0], cfg); err != nil {
				t.Fatalf("%s: connection to replica 1: %v", what, err)
			}
			resumed, _, err := meshReplicaGet(addrs[r], cfg)
			if err != nil {
				t.Fatalf("%s: connection to replica %d: %v", what, r+1, err)
			}
			if !resumed {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("%s: sessions issued on replica 1 still do not resume on the others: %v", what, err)
	}
	return tries
}

// trafficStats counts the connections of startTraffic.
type trafficStats struct {
	attempts, resumed, failed int
	firstErr                  error
}

// traffic is a client reconnecting round robin over replicas, one
// connection at a time, with one session cache, until stop.
type traffic struct {
	stopc chan struct{}
	done  chan trafficStats
}

func startTraffic(addrs []string, base *tls.Config) *traffic {
	tr := &traffic{stopc: make(chan struct{}), done: make(chan trafficStats, 1)}
	cfg := base.Clone()
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	go func() {
		var st trafficStats
		for i := 0; ; i++ {
			select {
			case <-tr.stopc:
				tr.done <- st
				return
			default:
			}
			st.attempts++
			resumed, status, err := meshReplicaGet(addrs[i%len(addrs)], cfg)
			if err == nil && status != http.StatusServiceUnavailable {
				err = fmt.Errorf("status %d, want 503 (no endpoints)", status)
			}
			switch {
			case err != nil:
				st.failed++
				if st.firstErr == nil {
					st.firstErr = err
				}
			case resumed:
				st.resumed++
			}
		}
	}()
	return tr
}

func (tr *traffic) stop() trafficStats {
	close(tr.stopc)
	return <-tr.done
}
