package pki

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerateLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := GenerateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v err %v", st.Mode(), err)
	}
	if _, err := GenerateCA(dir); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v", err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Fingerprint() != ca.Fingerprint() {
		t.Fatal("fingerprint changed across load")
	}
	k1, _ := ca.DeriveKey("x")
	k2, _ := loaded.DeriveKey("x")
	k3, _ := loaded.DeriveKey("y")
	if string(k1) != string(k2) || string(k1) == string(k3) || len(k1) != 32 {
		t.Fatal("DeriveKey not deterministic or not label-separated")
	}
}

func TestIssueVerify(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCA("other")
	tests := []struct {
		name   string
		issuer *CA
		ok     bool
	}{
		{"same CA", ca, true},
		{"other CA", other, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.issuer.IssueNode("node-a", []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			name, err := ca.VerifyPeer(c.Certificate)
			if (err == nil) != tc.ok {
				t.Fatalf("verify err %v", err)
			}
			if tc.ok && name != "node-a" {
				t.Fatalf("name %q", name)
			}
		})
	}
	if _, err := ca.VerifyPeer(nil); err == nil {
		t.Fatal("empty chain accepted")
	}
	if _, err := ca.IssueNode("", nil, 0); err == nil {
		t.Fatal("empty name accepted")
	}
}

func TestNodeCertRenews(t *testing.T) {
	ca, _ := NewCA("test")
	nc, err := ca.NewNodeCert("n", nil, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := nc.Get()
	b, _ := nc.Get()
	if a != b {
		t.Fatal("renewed too early")
	}
	// Pretend the certificate was issued with a longer validity: past half-life.
	nc.validity = 4*time.Hour + time.Minute
	c, _ := nc.Get()
	if c == a {
		t.Fatal("not renewed past half-life")
	}
}
