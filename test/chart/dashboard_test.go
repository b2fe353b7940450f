package chart

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var metricName = regexp.MustCompile(`\bmeshgate_[a-z0-9_]+`)

// TestDashboardMetricsExist: every metric the Grafana dashboard queries is
// defined somewhere in meshgate's Go source (as a full name, a prefix plus
// a name, or Namespace/Subsystem/Name parts), so a renamed metric breaks
// this test rather than a panel.
func TestDashboardMetricsExist(t *testing.T) {
	raw := readRepoFile(t, "charts/meshgate/dashboards/meshgate-sessionmesh.json")
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	lits := goStringLiterals(t)
	seen := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				seen++
				if !metricDefined(m, lits) {
					t.Errorf("panel %q queries %s, which no Go source defines", p.Title, m)
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("dashboard queries no meshgate metric")
	}
}

func metricDefined(name string, lits map[string]bool) bool {
	for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
		n, ok := strings.CutSuffix(name, suffix)
		if !ok || (suffix != "" && n == name) {
			continue
		}
		if lits[n] {
			return true
		}
		for i := range len(n) {
			if n[i] != '_' {
				continue
			}
			// prefix+"name" concatenation, or Namespace "meshgate",
			// Subsystem, Name.
			if lits[n[:i+1]] && lits[n[i+1:]] {
				return true
			}
			if head, ok := strings.CutPrefix(n[:i], "meshgate_"); ok && lits[head] && lits[n[i+1:]] {
				return true
			}
		}
	}
	return false
}

// goStringLiterals collects the string literals of the main module's
// non-test Go files.
func goStringLiterals(t *testing.T) map[string]bool {
	t.Helper()
	lits := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "testdata", "node_modules":
				return filepath.SkipDir
			}
			if path != repoRoot && fileExists(filepath.Join(path, "go.mod")) {
				return filepath.SkipDir // nested modules (this one, hack/tools)
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil // someone's half-written file; its literals do not count
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if bl, ok := n.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				if s, err := strconv.Unquote(bl.Value); err == nil {
					lits[s] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lits
}
