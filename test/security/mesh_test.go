package security

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

const rejected = "meshgate_sessionmesh_rejected_connections_total"

// attacker holds the identities a hostile mesh client can use.
type attacker struct {
	target    string // mesh address under attack
	ca        *pki.CA
	foreignCA *pki.CA
	clusterID string
	seq       atomic.Uint64
}

// cert issues a fresh node certificate from ca named name.
func cert(ca *pki.CA, name string) (*tls.Certificate, error) {
	return ca.IssueNode(name, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
}

// dialTLS opens a mesh TLS connection presenting c (nil: no certificate).
func (a *attacker) dialTLS(c *tls.Certificate) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", a.target, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if c != nil {
		// Always present c, even when the server's CertificateRequest lists
		// other CAs (Go's client would otherwise send no certificate).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return tc, nil
}

// member dials with a valid certificate and sends a Hello for clusterID;
// with the right id it reads the node's Hello back.
func (a *attacker) member(clusterID string) (*tls.Conn, error) {
	name := fmt.Sprintf("intruder-%d", a.seq.Add(1))
	c, err := cert(a.ca, name)
	if err != nil {
		return nil, err
	}
	tc, err := a.dialTLS(c)
	if err != nil {
		return nil, err
	}
	hello := wire.AppendFrame(nil, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		ClusterID: clusterID, NodeName: name, MeshAddr: "127.0.0.99:1"})
	if _, err := tc.Write(hello); err != nil {
		tc.Close()
		return nil, fmt.Errorf("write hello: %w", err)
	}
	if clusterID == a.clusterID {
		if _, err := wire.NewReader(tc, 0).ReadMessage(); err != nil {
			tc.Close()
			return nil, fmt.Errorf("read node hello: %w", err)
		}
	}
	return tc, nil
}

// expectClosed reads until the node closes the connection (bounded).
func expectClosed(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("node kept the connection open: %w", err)
	}
	return nil // EOF, reset or TLS alert: closed by the node
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// meshAttack is one hostile mesh client; it returns once the node has
// refused it.
type meshAttack struct {
	name   string
	reason string // rejection counter label that must grow
	run    func(a *attacker) error
}

var meshAttacks = []meshAttack{
	{"no client certificate", mesh.RejectNoClientCert, func(a *attacker) error {
		return a.refused(nil, nil)
	}},
	{"certificate from another CA", mesh.RejectBadCert, func(a *attacker) error {
		return a.refused(a.foreignCA, nil)
	}},
	{"valid certificate, wrong cluster id", mesh.RejectCluster, func(a *attacker) error {
		return a.afterHello("not-this-cluster", nil)
	}},
	{"garbage instead of TLS", mesh.RejectHandshake, func(a *attacker) error {
		raw, err := net.DialTimeout("tcp", a.target, 2*time.Second)
		if err != nil {
			return err
		}
		return writeThenClosed(raw, randBytes(512))
	}},
	{"garbage instead of Hello", mesh.RejectHello, func(a *attacker) error {
		g := randBytes(512)
		g[0] = 0xEE // never a valid type
		return a.certified(a.ca, g)
	}},
	{"0xFFFFFFFF length before Hello", mesh.RejectHello, func(a *attacker) error {
		return a.certified(a.ca, []byte{byte(wire.TypeHello), 0xFF, 0xFF, 0xFF, 0xFF})
	}},
	{"0xFFFFFFFF length after Hello", mesh.RejectTooLarge, func(a *attacker) error {
		return a.afterHello(a.clusterID, []byte{byte(wire.TypeInsert), 0xFF, 0xFF, 0xFF, 0xFF})
	}},
}

// refused dials with a certificate from ca (nil: none) that the node must
// refuse, during the TLS handshake or by closing right after it; payload
// (if any) is written first.
func (a *attacker) refused(ca *pki.CA, payload []byte) error {
	var c *tls.Certificate
	if ca != nil {
		var err error
		if c, err = cert(ca, fmt.Sprintf("stranger-%d", a.seq.Add(1))); err != nil {
			return err
		}
	}
	tc, err := a.dialTLS(c)
	if err != nil {
		return nil // refused during the handshake
	}
	return writeThenClosed(tc, payload)
}

// certified completes a TLS handshake with a certificate from ca, which
// must succeed, writes payload and expects the node to close.
func (a *attacker) certified(ca *pki.CA, payload []byte) error {
	c, err := cert(ca, fmt.Sprintf("garbler-%d", a.seq.Add(1)))
	if err != nil {
		return err
	}
	tc, err := a.dialTLS(c)
	if err != nil {
		return err
	}
	return writeThenClosed(tc, payload)
}

// afterHello is a member's connection (Hello for clusterID sent) that
// writes payload and expects the node to close.
func (a *attacker) afterHello(clusterID string, payload []byte) error {
	tc, err := a.member(clusterID)
	if err != nil {
		return err
	}
	return writeThenClosed(tc, payload)
}

// writeThenClosed writes payload (if any) on c, expects the node to close
// it, and closes our side.
func writeThenClosed(c net.Conn, payload []byte) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if len(payload) > 0 {
		c.Write(payload) // the node may already have closed: expectClosed decides
	}
	return expectClosed(c)
}

// TestMeshRejectsHostilePeers runs 1000+ hostile connections against one
// replica's mesh port: each kind is refused and counted by reason, the
// replica keeps serving HTTPS and the mesh stays connected, and RSS grows
// by less than 20 MiB.
func TestMeshRejectsHostilePeers(t *testing.T) {
	e := setup(t)
	r := e.cluster.Replicas[0]
	ca, err := pki.LoadCA(e.cluster.MeshDir)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewCA("evil CA")
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{target: r.MeshAddr, ca: ca, foreignCA: foreign, clusterID: ca.Fingerprint()}

	// One warm-up round so lazily allocated pools count as baseline.
	for _, at := range meshAttacks {
		if err := at.run(a); err != nil {
			t.Fatalf("warm-up %s: %v", at.name, err)
		}
	}
	// The node counts a rejection as it closes the connection, which may
	// be after our side saw the close: wait until the warm-up is counted.
	warm := map[string]float64{}
	for _, at := range meshAttacks {
		warm[at.reason]++
	}
	before := map[string]float64{}
	testkit.WaitFor(t, 10*time.Second, "warm-up rejections counted", func() bool {
		for reason, w := range warm {
			if before[reason] = r.MustMetric(t, rejected, `reason="`+reason+`"`); before[reason] < w {
				return false
			}
		}
		return true
	})
	rss0 := rssKiB(t, r.Proc.PID())

	const rounds = 150 // x7 kinds = 1050 connections
	want := map[string]float64{}
	for _, at := range meshAttacks {
		want[at.reason] += rounds
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, 8)
	for i := 0; i < rounds; i++ {
		for _, at := range meshAttacks {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := at.run(a); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %w", at.name, err))
				}
			})
		}
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d attacks were not refused; first: %v", n, firstErr.Load())
	}
	// The node counts after closing: wait for every count, then report.
	grown := func(reason string) float64 { return r.MustMetric(t, rejected, `reason="`+reason+`"`) - before[reason] }
	if err := testkit.Until(10*time.Second, func() bool {
		for reason, w := range want {
			if grown(reason) < w {
				return false
			}
		}
		return true
	}); err != nil {
		for reason, w := range want {
			if got := grown(reason); got < w {
				t.Errorf("rejected{reason=%q} grew by %.0f, want >= %.0f", reason, got, w)
			}
		}
	}
	for reason, w := range want {
		t.Logf("rejected{reason=%q}: +%.0f (want >= %.0f)", reason, grown(reason), w)
	}
	e.mustServe(t, r)
	// RSS once the node has closed every hostile connection.
	testkit.WaitFor(t, 10*time.Second, "hostile connections closed", func() bool { return connGone(t, r) })
	rss1 := rssKiB(t, r.Proc.PID())
	t.Logf("RSS %s: %d KiB before, %d KiB after %d hostile connections (%+d KiB)",
		r.Name, rss0, rss1, rounds*len(meshAttacks), rss1-rss0)
	if rss1-rss0 > 20<<10 {
		t.Errorf("RSS grew by %d KiB over %d hostile connections, want < 20 MiB", rss1-rss0, rounds*len(meshAttacks))
	}
	if on := r.MustMetric(t, "meshgate_sessionmesh_peers_online", ""); on < 2 {
		t.Errorf("%s: peers_online = %.0f after the attack, want 2", r.Name, on)
	}
}

// TestMeshNonReadingPeerBounded joins with a valid identity, asks for many
// snapshots and never reads: the node's response queue must stay bounded
// (overflow counted in drops_total), the node must drop the connection on
// its write deadline, keep serving HTTPS, and stay within 20 MiB of RSS.
func TestMeshNonReadingPeerBounded(t *testing.T) {
	e := setup(t)
	r := e.cluster.Replicas[0]
	// Give the node sessions to stream, so that its snapshots outgrow the
	// socket buffers. A Go client without a session cache offers no PSK
	// modes and the server then issues no ticket (no record): give each
	// worker a cache.
	cfg := e.clientConfig(t, harness.Host)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := harness.Load(ctx, cfg, r.HTTPSAddr, 4, 300, nil)
	t.Logf("primed sessions: %v", st)
	if recs := r.MustMetric(t, "meshgate_sessionmesh_records", ""); recs < 1000 {
		t.Fatalf("%s holds %.0f session records after priming, want >= 1000: the snapshots would fit in the socket buffers and prove nothing", r.Name, recs)
	}
	ca, err := pki.LoadCA(e.cluster.MeshDir)
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{target: r.MeshAddr, ca: ca, clusterID: ca.Fingerprint()}
	drops0 := r.MustMetric(t, "meshgate_sessionmesh_drops_total", "")
	rss0 := rssKiB(t, r.Proc.PID())

	tc, err := a.member(a.clusterID)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	var frames []byte
	for i := 1; i <= 5000; i++ {
		frames = wire.AppendFrame(frames, &wire.SnapshotRequest{ID: uint64(i)})
	}
	tc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Write(frames); err != nil {
		t.Fatalf("write snapshot requests: %v", err)
	}
	// Keep the connection alive with heartbeats (the node's read deadline)
	// without ever reading, until the node gives up on us.
	closed := false
	deadline := time.Now().Add(20 * time.Second)
	heartbeat := time.NewTicker(500 * time.Millisecond)
	defer heartbeat.Stop()
	for ; time.Now().Before(deadline); <-heartbeat.C {
		hb := wire.AppendFrame(nil, &wire.Heartbeat{Sent: time.Now().UnixNano()})
		tc.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := tc.Write(hb); err != nil {
			closed = true
			break
		}
		if on := r.MustMetric(t, "meshgate_sessionmesh_drops_total", ""); on > drops0 && connGone(t, r) {
			closed = true
			break
		}
	}
	drops := r.MustMetric(t, "meshgate_sessionmesh_drops_total", "") - drops0
	rss1 := rssKiB(t, r.Proc.PID())
	t.Logf("non-reading peer: drops_total +%.0f, closed by node: %v, RSS %d -> %d KiB (%+d)", drops, closed, rss0, rss1, rss1-rss0)
	if drops == 0 {
		t.Errorf("drops_total did not grow: the node's queue for a non-reading peer is not bounded")
	}
	if !closed {
		t.Errorf("node kept a non-reading peer's connection for 20 s")
	}
	if rss1-rss0 > 20<<10 {
		t.Errorf("RSS grew by %d KiB, want < 20 MiB", rss1-rss0)
	}
	e.mustServe(t, r)
}

// connGone reports whether the node's mesh status lists no intruder
// connection any more (inbound count back to the two real peers).
func connGone(t *testing.T, r *harness.Replica) bool {
	t.Helper()
	s, err := r.Get("/status/sessionmesh")
	if err != nil {
		return false
	}
	var st struct {
		Mesh struct {
			Inbound int64 `json:"inbound_connections"`
		} `json:"mesh"`
	}
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return false
	}
	return st.Mesh.Inbound <= 2 // the two real peers only
}
