package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

func TestRunDispatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no args", nil, 2, "", "usage: meshgate"},
		{"unknown", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"version", []string{"version"}, 0, "meshgate dev", ""},
		{"help", []string{"help"}, 0, "standalone", ""},
		{"standalone needs manifests", []string{"standalone"}, 1, "", "--manifests is required"},
		{"mesh needs pki", []string{"standalone", "--manifests", "x", "--mesh-addr", "127.0.0.1:0"}, 1, "", "--mesh-addr needs --mesh-dir"},
		{"bad log level", []string{"standalone", "--manifests", "x", "--log-level", "loud"}, 1, "", "unknown level"},
		{"bad session mode", []string{"standalone", "--manifests", "x", "--session-mode", "Sometimes"}, 1, "", "--session-mode"},
		{"proxy protocol needs trusted proxies", []string{"standalone", "--manifests", "x", "--proxy-protocol"}, 1, "", "--proxy-protocol needs --trusted-proxies"},
		{"bad gateway address pool", []string{"standalone", "--manifests", "x", "--gateway-address-pool", "10.0.0.9-10.0.0.1"}, 1, "", "--gateway-address-pool"},
		{"mesh-ca needs out", []string{"mesh-ca"}, 1, "", "--out is required"},
		{"bad flag", []string{"standalone", "--nope"}, 1, "", "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if !strings.Contains(out.String(), tc.inStdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.inStdout)
			}
			if !strings.Contains(errb.String(), tc.inStderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.inStderr)
			}
		})
	}
}

func TestStandaloneBadManifestIsFatalAndNamed(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: Service\nmetadata: [oops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"standalone", "--manifests", dir, "--https-addr", "127.0.0.1:0", "--http-addr", "", "--metrics-addr", ""}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "bad.yaml") {
		t.Errorf("error does not name the file: %s", errb.String())
	}
}

func TestMeshCAWritesAndRefusesOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	var out, errb bytes.Buffer
	if code := run([]string{"mesh-ca", "--out", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "cluster id sha256-") {
		t.Errorf("stdout %q lacks the cluster id", out.String())
	}
	st, err := os.Stat(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", st.Mode().Perm())
	}
	if code := run([]string{"mesh-ca", "--out", dir}, &out, &errb); code != 1 {
		t.Fatalf("second mesh-ca exit %d, want 1 (no overwrite)", code)
	}
}

// TestMeshCARotateDir runs the three rotation steps on a --mesh-dir: each
// prints its phase; the cluster id stays; at the end one CA, not the
// first, is trusted; a replica's reload (loadMeshDir/reloadMeshDir)
// follows every step.
func TestMeshCARotateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	var out, errb bytes.Buffer
	if code := run([]string{"mesh-ca", "--out", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	id, err := loadMeshDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := id.Current()
	for _, phase := range []string{"trust-new", "sign-new", "stable"} {
		out.Reset()
		if code := run([]string{"mesh-ca", "rotate", "--dir", dir}, &out, &errb); code != 0 {
			t.Fatalf("rotate exit %d: %s", code, errb.String())
		}
		if !strings.Contains(out.String(), "entered phase "+phase) {
			t.Fatalf("rotate printed %q, want phase %s", out.String(), phase)
		}
		reloadMeshDir(dir, id, logr.Discard())
		if got := string(id.Current().Phase()); got != phase {
			t.Fatalf("reloaded phase %s, want %s", got, phase)
		}
	}
	last := id.Current()
	if last.ClusterID() != first.ClusterID() {
		t.Errorf("cluster id changed: %s → %s", first.ClusterID(), last.ClusterID())
	}
	if tr := last.Trusted(); len(tr) != 1 || tr[0] == first.Signing().Fingerprint() {
		t.Errorf("trusted after the rotation %v; first CA %s", tr, first.Signing().Fingerprint())
	}
	if code := run([]string{"mesh-ca", "rotate"}, &out, &errb); code != 1 {
		t.Fatalf("rotate without --dir or --secret: exit %d, want 1", code)
	}
}

func TestFlagHelpers(t *testing.T) {
	f := commonFlags{trusted: "10.0.0.0/8, ::1/128,"}
	ps, err := f.trustedPrefixes()
	if err != nil || len(ps) != 2 || ps[0].String() != "10.0.0.0/8" {
		t.Fatalf("trustedPrefixes = %v, %v", ps, err)
	}
	f.trusted = "10.0.0.300/8"
	if _, err := f.trustedPrefixes(); err == nil {
		t.Fatal("bad CIDR accepted")
	}
	if got := splitList(" a:1, ,b:2,"); len(got) != 2 || got[1] != "b:2" {
		t.Fatalf("splitList = %q", got)
	}
}
