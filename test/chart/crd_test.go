package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestCRDsInSync: charts/meshgate/crds is a byte-for-byte copy of
// config/crd/bases (what controller-gen generates from api/). After
// `make generate`, copy the files over; this test names the ones that
// differ.
func TestCRDsInSync(t *testing.T) {
	src := filepath.Join(repoRoot, "config", "crd", "bases")
	dst := filepath.Join(chartDir, "crds")
	want, got := yamlFiles(t, src), yamlFiles(t, dst)
	if len(want) == 0 {
		t.Fatalf("no CRDs in %s", src)
	}
	if !slices.Equal(want, got) {
		t.Fatalf("CRD files differ: config/crd/bases has %v, the chart has %v (cp config/crd/bases/*.yaml charts/meshgate/crds/)", want, got)
	}
	for _, name := range want {
		a, _ := os.ReadFile(filepath.Join(src, name))
		b, _ := os.ReadFile(filepath.Join(dst, name))
		if !bytes.Equal(a, b) {
			t.Errorf("charts/meshgate/crds/%s differs from config/crd/bases/%s (cp config/crd/bases/*.yaml charts/meshgate/crds/)", name, name)
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
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}
