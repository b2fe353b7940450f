package sessionmesh

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// intruder is a hostile mesh member: it holds a valid certificate of the
// cluster CA under a name of its own (what one compromised or stolen
// replica identity gives) and speaks the wire protocol directly.
type intruder struct {
	name string
	cert *tls.Certificate
}

func newIntruder(t testing.TB, ca *pki.CA, name string) *intruder {
	t.Helper()
	c, err := ca.IssueNode(name, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &intruder{name: name, cert: c}
}

// joinCluster dials n's mesh address, completes mutual TLS and the Hello
// exchange under n's cluster id, and returns the connection (closed at the
// end of the test).
func (in *intruder) joinCluster(t testing.TB, n *testNode) *intruderConn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", n.MeshAddr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return in.cert, nil }})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("intruder handshake: %v", err)
	}
	c := &intruderConn{tc: tc, fr: wire.NewReader(tc, 0)}
	t.Cleanup(func() { tc.Close() })
	c.send(t, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		ClusterID: n.cfg.ClusterID, NodeName: in.name, MeshAddr: "127.0.0.99:1"})
	m, err := c.fr.ReadMessage()
	if err != nil {
		t.Fatalf("intruder: no hello from %s: %v", n.cfg.NodeName, err)
	}
	if _, ok := m.(*wire.Hello); !ok {
		t.Fatalf("intruder: first message %v", m.Type())
	}
	return c
}

type intruderConn struct {
	tc *tls.Conn
	fr *wire.Reader
}

func (c *intruderConn) send(t testing.TB, msgs ...wire.Message) {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		b = wire.AppendFrame(b, m)
	}
	if _, err := c.tc.Write(b); err != nil {
		t.Fatalf("intruder write: %v", err)
	}
}

// serve makes the intruder a mesh peer that nodes dial (an address in
// their peer set): it accepts on loopback, exchanges Hellos under
// clusterID, sends heartbeats, and hands every message to answer, whose
// replies it writes back. It returns the listen address.
func (in *intruder) serve(t testing.TB, clusterID string, answer func(wire.Message) []wire.Message) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{*in.cert}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { in.serveConn(raw, clusterID, answer, done) })
		}
	})
	return ln.Addr().String()
}

func (in *intruder) serveConn(raw net.Conn, clusterID string, answer func(wire.Message) []wire.Message, done chan struct{}) {
	defer raw.Close()
	var mu sync.Mutex
	write := func(msgs ...wire.Message) error {
		var b []byte
		for _, m := range msgs {
			b = wire.AppendFrame(b, m)
		}
		mu.Lock()
		defer mu.Unlock()
		raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, err := raw.Write(b)
		return err
	}
	fr := wire.NewReader(raw, 0)
	if _, err := fr.ReadMessage(); err != nil { // the node's Hello
		return
	}
	if write(&wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		ClusterID: clusterID, NodeName: in.name, MeshAddr: raw.LocalAddr().String()}) != nil {
		return
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				raw.Close()
				return
			case <-stop:
				return
			case <-tk.C:
				if write(&wire.Heartbeat{Sent: time.Now().UnixNano()}) != nil {
					return
				}
			}
		}
	}()
	for {
		raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := fr.ReadMessage()
		if err != nil {
			return
		}
		if out := answer(m); len(out) > 0 && write(out...) != nil {
			return
		}
	}
}
