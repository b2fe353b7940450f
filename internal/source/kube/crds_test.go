package kube

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestVendoredGatewayAPICRDs checks that the Gateway API CRDs vendored by
// hack/gateway-api-crds.sh are byte for byte the ones of the
// sigs.k8s.io/gateway-api module go.mod pins: all of its standard-channel
// files under config/, its CRDs (no ValidatingAdmissionPolicy, which Helm's
// crds/ cannot hold) in the chart.
func TestVendoredGatewayAPICRDs(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locating the gateway-api module: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	want := yamlFiles(t, src)
	if len(want) == 0 {
		t.Fatalf("no CRDs in %s", src)
	}
	crdsOnly := slices.DeleteFunc(slices.Clone(want), func(f string) bool { return strings.Contains(f, "_vap_") })
	for dir, want := range map[string][]string{"../../../config/crd/gateway-api": want, "../../../charts/meshgate/crds/gateway-api": crdsOnly} {
		got := yamlFiles(t, dir)
		if !slices.Equal(got, want) {
			t.Errorf("%s holds %v, the module %v; run hack/gateway-api-crds.sh", dir, got, want)
			continue
		}
		for _, f := range want {
			a, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s/%s differs from the module's; run hack/gateway-api-crds.sh", dir, f)
			}
		}
	}
}

func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			out = append(out, e.Name())
		}
	}
	return out
}
