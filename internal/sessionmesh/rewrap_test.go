package sessionmesh

import (
	"crypto/tls"
	"testing"
)

// TestTLS12RewrapNotStoredAgain: Go's TLS 1.2 server re-wraps the session
// it just resumed on every resumed handshake. The re-wrap must neither
// store a new record nor replicate one, on the issuer or on another
// replica, and the session must keep resuming everywhere.
func TestTLS12RewrapNotStoredAgain(t *testing.T) {
	nodes, _ := cluster(t, 2, Stateful)
	a, b := nodes[0], nodes[1]
	c := newClient(tls.VersionTLS12)
	if c.mustConnect(t, a.tlsAddr) {
		t.Fatal("first connection resumed")
	}
	waitFor(t, "session replicated to b", func() bool { return b.store.Stats().Records == 1 })
	wrapsA := a.m.wraps[modeStateful].Load()
	for i := range 6 {
		n := nodes[i%2]
		if !c.mustConnect(t, n.tlsAddr) {
			t.Fatalf("connection %d to %s did not resume", i, n.cfg.NodeName)
		}
	}
	for _, n := range nodes {
		if got := n.store.Stats().Records; got != 1 {
			t.Errorf("%s holds %d records after 6 resumptions, want the 1 session", n.cfg.NodeName, got)
		}
		if got := n.m.rewraps.Load(); got != 3 {
			t.Errorf("%s answered %d re-wraps from its store, want 3", n.cfg.NodeName, got)
		}
	}
	if got := a.m.wraps[modeStateful].Load(); got != wrapsA {
		t.Errorf("issuer stored %d new sessions on resumption, want 0", got-wrapsA)
	}
}

// TestSessionKeyDeterministicAndKeyed: the store key is a function of the
// state under the cluster key: equal on every replica of one cluster,
// different for different state or another cluster.
func TestSessionKeyDeterministicAndKeyed(t *testing.T) {
	ca1, _ := newCA(t)
	ca2, _ := newCA(t)
	n1, err := New(Config{NodeName: "a", CA: ca1})
	if err != nil {
		t.Fatal(err)
	}
	n1b, _ := New(Config{NodeName: "b", CA: ca1})
	n2, _ := New(Config{NodeName: "c", CA: ca2})
	st := []byte("serialized session state")
	if n1.sessionKey(st) != n1b.sessionKey(st) {
		t.Error("two replicas of one cluster derive different keys for one state")
	}
	if n1.sessionKey(st) == n1.sessionKey([]byte("other state")) {
		t.Error("different states share a key")
	}
	if n1.sessionKey(st) == n2.sessionKey(st) {
		t.Error("another cluster derives the same key")
	}
}
