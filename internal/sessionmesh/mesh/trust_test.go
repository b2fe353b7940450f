package mesh

import (
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
)

// TestReverifyAcrossRotation: two nodes, each with its own Identity, go
// through a CA rotation. While the old CA is still trusted Reverify closes
// nothing; once it is dropped, every connection (made with old-CA
// certificates) is closed, counted, and the pair reconnects with
// certificates of the new CA; replication works afterwards.
func TestReverifyAcrossRotation(t *testing.T) {
	ca, _ := pki.NewCA("t")
	crt, key := ca.PEM()
	m := pki.Material{pki.CertFile: crt, pki.KeyFile: key}
	ids := make([]*pki.Identity, 2)
	meshes := make([]*testMesh, 2)
	peers := []chanPeers{make(chanPeers, 4), make(chanPeers, 4)}
	for i, name := range []string{"a", "b"} {
		b, err := m.Parse()
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = pki.NewIdentity(b)
		nc, err := ids[i].NewNodeCert(name, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		meshes[i] = startMesh(t, ca, name, peers[i], func(c *Config) { c.CA, c.Cert = ids[i], nc.Get })
	}
	a, b := meshes[0], meshes[1]
	peers[0] <- []string{b.Addr()}
	peers[1] <- []string{a.Addr()}
	online := func() bool { return len(a.OnlineNames()) == 1 && len(b.OnlineNames()) == 1 }
	waitFor(t, "pair online", online)

	for step := 1; step <= 3; step++ {
		var err error
		if m, _, err = pki.Rotate(m); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			bd, err := m.Parse()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := id.Update(bd); err != nil {
				t.Fatal(err)
			}
		}
		closed := a.Reverify() + b.Reverify()
		switch {
		case step < 3 && closed != 0:
			t.Fatalf("step %d (old CA still trusted): Reverify closed %d connections", step, closed)
		case step == 3 && closed == 0:
			t.Fatal("old CA dropped: Reverify closed no connection made with its certificates")
		}
		waitFor(t, "pair online after the step", online)
	}
	if n := a.Status().Rejected[RejectUntrusted] + b.Status().Rejected[RejectUntrusted]; n == 0 {
		t.Errorf("closed connections not counted as %s", RejectUntrusted)
	}
	a.Insert(record(1))
	waitFor(t, "replication under the new CA", func() bool { _, ok := b.h.Lookup(record(1).Key); return ok })
}
