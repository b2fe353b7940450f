package pki

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

func material(t *testing.T) Material {
	t.Helper()
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := ca.PEM()
	return Material{CertFile: crt, KeyFile: key}
}

func parse(t *testing.T, m Material) *Bundle {
	t.Helper()
	b, err := m.Parse()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRotateSteps walks one rotation: which CA signs and which are trusted
// at each phase, the cluster id and session-id key kept throughout, and a
// node certificate of the old CA refused at the end.
func TestRotateSteps(t *testing.T) {
	m0 := material(t)
	b0 := parse(t, m0)
	if b0.Phase() != PhaseStable || len(b0.Trusted()) != 1 {
		t.Fatalf("fresh material: phase %s, %d trusted", b0.Phase(), len(b0.Trusted()))
	}
	oldCert, err := b0.Signing().IssueNode("n", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m1, p1, err := Rotate(m0)
	if err != nil {
		t.Fatal(err)
	}
	b1 := parse(t, m1)
	m2, p2, err := Rotate(m1)
	if err != nil {
		t.Fatal(err)
	}
	b2 := parse(t, m2)
	m3, p3, err := Rotate(m2)
	if err != nil {
		t.Fatal(err)
	}
	b3 := parse(t, m3)
	if p1 != PhaseTrustNew || p2 != PhaseSignNew || p3 != PhaseStable ||
		b1.Phase() != p1 || b2.Phase() != p2 || b3.Phase() != p3 {
		t.Fatalf("phases %s %s %s, parsed %s %s %s", p1, p2, p3, b1.Phase(), b2.Phase(), b3.Phase())
	}
	newFP := b2.Signing().Fingerprint()
	switch {
	case b1.Signing().Fingerprint() != b0.Signing().Fingerprint():
		t.Error("trust-new: the new CA signs already")
	case newFP == b0.Signing().Fingerprint():
		t.Error("sign-new: the old CA still signs")
	case len(b1.Trusted()) != 2 || len(b2.Trusted()) != 2:
		t.Errorf("trusted during the overlap: %v, %v", b1.Trusted(), b2.Trusted())
	case len(b3.Trusted()) != 1 || b3.Trusted()[0] != newFP:
		t.Errorf("stable: trusted %v, want only %s", b3.Trusted(), newFP)
	}
	for i, b := range []*Bundle{b1, b2, b3} {
		if b.ClusterID() != b0.ClusterID() || !bytes.Equal(b.SessionIDKey(), b0.SessionIDKey()) {
			t.Errorf("step %d changed the cluster id or the session-id key", i+1)
		}
	}
	newCert, err := b2.Signing().IssueNode("n", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		b      *Bundle
		oldOK  bool
		newOK  bool
		bundle int
	}{
		{"stable", b0, true, false, 0}, {"trust-new", b1, true, true, 1},
		{"sign-new", b2, true, true, 2}, {"stable again", b3, false, true, 3},
	} {
		_, errOld := tc.b.VerifyPeer(oldCert.Certificate)
		_, errNew := tc.b.VerifyPeer(newCert.Certificate)
		if (errOld == nil) != tc.oldOK || (errNew == nil) != tc.newOK {
			t.Errorf("%s: old CA's certificate accepted %v, new CA's %v; want %v, %v",
				tc.name, errOld == nil, errNew == nil, tc.oldOK, tc.newOK)
		}
	}
	if _, ok := m0[TrustFile]; ok {
		t.Error("Rotate modified its input")
	}
}

func TestParseRefusesInconsistentMaterial(t *testing.T) {
	m := material(t)
	other := material(t)
	m1, _, err := Rotate(m)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]Material{
		"trust without the signing CA": {CertFile: m[CertFile], KeyFile: m[KeyFile], TrustFile: other[CertFile]},
		"next CA not trusted": {CertFile: m[CertFile], KeyFile: m[KeyFile],
			NextCertFile: m1[NextCertFile], NextKeyFile: m1[NextKeyFile]},
		"next certificate without its key": {CertFile: m[CertFile], KeyFile: m[KeyFile], TrustFile: m1[TrustFile],
			NextCertFile: m1[NextCertFile]},
		"short session-id key": {CertFile: m[CertFile], KeyFile: m[KeyFile], SessionIDKeyFile: []byte("short")},
		"key of another CA":    {CertFile: m[CertFile], KeyFile: other[KeyFile]},
		"trust not PEM":        {CertFile: m[CertFile], KeyFile: m[KeyFile], TrustFile: []byte("garbage")},
	}
	for name, bad := range cases {
		if _, err := bad.Parse(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMaterialFiles(t *testing.T) {
	dir := t.TempDir()
	m := material(t)
	if err := WriteMaterial(dir, m); err != nil {
		t.Fatal(err)
	}
	m1, _, err := Rotate(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteMaterial(dir, m1); err != nil {
		t.Fatal(err)
	}
	got, err := LoadMaterial(dir)
	if err != nil {
		t.Fatal(err)
	}
	if parse(t, got).Generation() != parse(t, m1).Generation() || len(got) != len(m1) {
		t.Fatalf("loaded %d files, generation differs from what was written", len(got))
	}
	m2, _, _ := Rotate(m1)
	if err := WriteMaterial(dir, m2); err != nil {
		t.Fatal(err)
	}
	got, err = LoadMaterial(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[NextKeyFile]; ok {
		t.Fatal("next.key left behind after the new CA took over")
	}
}

// TestIdentityUpdate: the node certificate follows the signing CA, the
// callbacks run on a change only, and material changing the cluster id or
// the session-id key is refused with the bundle in force kept.
func TestIdentityUpdate(t *testing.T) {
	m0 := material(t)
	id := NewIdentity(parse(t, m0))
	nc, err := id.NewNodeCert("n", []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := nc.Get()
	calls := 0
	id.OnUpdate(func(*Bundle) { calls++ })
	if changed, err := id.Update(parse(t, m0)); changed || err != nil || calls != 0 {
		t.Fatalf("same material: changed %v err %v calls %d", changed, err, calls)
	}
	m1, _, _ := Rotate(m0)
	if changed, err := id.Update(parse(t, m1)); !changed || err != nil || calls != 1 {
		t.Fatalf("trust-new: changed %v err %v calls %d", changed, err, calls)
	}
	if c, _ := nc.Get(); c != first {
		t.Fatal("node certificate re-issued while the same CA signs")
	}
	m2, _, _ := Rotate(m1)
	if _, err := id.Update(parse(t, m2)); err != nil {
		t.Fatal(err)
	}
	c, _ := nc.Get()
	if c == first {
		t.Fatal("node certificate not re-issued after the signing CA changed")
	}
	if _, err := parse(t, m2).Signing().VerifyPeer(c.Certificate); err != nil {
		t.Fatalf("re-issued certificate not from the new CA: %v", err)
	}
	foreign := material(t)
	if _, err := id.Update(parse(t, foreign)); !errors.Is(err, ErrFixedAtStart) {
		t.Fatalf("material of another cluster: %v", err)
	}
	rekeyed := Material{}
	for k, v := range m2 {
		rekeyed[k] = v
	}
	rekeyed[SessionIDKeyFile] = bytes.Repeat([]byte{7}, 32)
	if _, err := id.Update(parse(t, rekeyed)); !errors.Is(err, ErrFixedAtStart) {
		t.Fatalf("new session-id key: %v", err)
	}
	if id.Current().Generation() != parse(t, m2).Generation() {
		t.Fatal("refused material replaced the bundle in force")
	}
}
