package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// gatewayManifests writes a manifest directory under dir for a standalone
// Gateway test: gateway.yaml with the given content and secret.yaml with
// the e2e PKI's echo-tls Secret that the Gateway's HTTPS listener names.
// It returns the directory.
func gatewayManifests(t *testing.T, dir string, gateway []byte) string {
	t.Helper()
	mdir := filepath.Join(dir, "manifests")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mdir, "gateway.yaml"), gateway, 0o644); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(env.PKI.SecretYAML)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mdir, "secret.yaml"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return mdir
}

// balancedCluster starts three replicas (PROXY protocol on, mesh on)
// reading manifestDir, with extra flags, behind an HAProxy named name on
// lbIP in round robin that sends them PROXY v2 headers: the shape of every
// cluster-wide e2e criterion. Both stop with the test.
func balancedCluster(t *testing.T, dir, manifestDir, name, lbIP string, extra ...string) (*harness.Cluster, *harness.HAProxy) {
	t.Helper()
	cluster, err := harness.StartCluster(t, harness.ClusterConfig{
		Bins: env.Bins, Dir: dir, ManifestDir: manifestDir, Replicas: 3, ProxyProtocol: true,
		ExtraArgs: extra,
	}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := harness.StartHAProxy(t, dir, name, lbIP, cluster.HTTPSAddrs(), true)
	if err != nil {
		t.Fatal(err)
	}
	return cluster, lb
}
