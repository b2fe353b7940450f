package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/meshgate/meshgate/"

// rule says which of the module's packages a layer may import. A layer is
// a path prefix; the longest matching prefix applies. May lists prefixes
// ("=path" for that package alone); a package may always import packages of
// its own layer. Its tests may import, in addition, what testMay lists.
type rule struct {
	layer   string
	may     []string
	testMay []string
}

// rules is the import graph of docs/architecture.md, lowest layers first.
// A package matching no layer fails the test: add its layer here and in the
// document.
var rules = []rule{
	{"api/", nil, nil},
	{"internal/routing", nil, nil},      // the contract: imports nothing of ours
	{"internal/tls12", nil, nil},        // a TLS implementation, like crypto/tls
	{"internal/resources", nil, nil},    // the Go runtime fitted to the container
	{"internal/clusterstate", nil, nil}, // shared runtime state; the mesh carries it
	{"internal/sessionmesh", []string{"internal/tls12", "internal/clusterstate"}, nil},
	{"internal/translate", []string{"api/", "internal/routing"}, nil},
	// The kube source's envtest suites run replicas against its tables.
	{"internal/source/", []string{"api/", "internal/routing", "internal/translate", "internal/sessionmesh/pki"},
		[]string{"internal/replica", "internal/sessionmesh"}},
	// The data plane calls the session layer (its Host type and hooks),
	// never the other way round.
	{"internal/dataplane/", []string{"internal/routing", "=internal/sessionmesh", "internal/tls12", "internal/clusterstate"}, nil},
	{"internal/replica", []string{"internal/routing", "internal/dataplane/", "internal/sessionmesh", "internal/clusterstate"}, nil},
	{"internal/archtest", nil, nil},
	// Test support, for every package's tests and test/.
	{"internal/testkit", []string{"api/", "internal/"}, nil},
	{"cmd/", []string{"api/", "internal/"}, nil},
	{"test/", []string{"api/", "internal/", "test/"}, nil},
}

// Every package's tests may use the shared test fixtures.
var testMayAll = []string{"internal/testkit"}

// ruleFor returns the rule with the longest layer prefix matching pkg.
func ruleFor(pkg string) (rule, bool) {
	var best rule
	found := false
	for _, r := range rules {
		if matches(pkg, r.layer) && len(r.layer) > len(best.layer) {
			best, found = r, true
		}
	}
	return best, found
}

// matches reports whether pkg is prefix or lies under it ("internal/routing"
// matches itself and "internal/routing/x", not "internal/routingx").
func matches(pkg, prefix string) bool {
	if exact, ok := strings.CutPrefix(prefix, "="); ok {
		return pkg == exact
	}
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(pkg, prefix)
	}
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

// imports are a package's imports of the module: of its code, and of its
// tests only.
type imports struct{ code, tests []string }

// violations checks a graph (package → imports, module-relative) against
// rules.
func violations(graph map[string]imports) []string {
	var out []string
	for pkg, imps := range graph {
		r, ok := ruleFor(pkg)
		if !ok {
			out = append(out, pkg+": no layer in internal/archtest's rules (add it there and to docs/architecture.md)")
			continue
		}
		allowed := func(imp string, extra ...[]string) bool {
			if matches(imp, r.layer) {
				return true
			}
			for _, list := range append(extra, r.may) {
				if slices.ContainsFunc(list, func(p string) bool { return matches(imp, p) }) {
					return true
				}
			}
			return false
		}
		for _, imp := range imps.code {
			if !allowed(imp) {
				out = append(out, pkg+" imports "+imp+": layer "+r.layer+" may import only "+strings.Join(append([]string{r.layer}, r.may...), ", "))
			}
		}
		for _, imp := range imps.tests {
			if !allowed(imp, r.testMay, testMayAll) {
				out = append(out, pkg+"'s tests import "+imp+": not allowed for layer "+r.layer)
			}
		}
	}
	slices.Sort(out)
	return out
}

// moduleGraph lists every package of the module (tests included) with its
// imports of the module.
func moduleGraph(t *testing.T) map[string]imports {
	t.Helper()
	cmd := exec.Command("go", "list", "-f",
		`{{.ImportPath}} {{join .Imports " "}} | {{join .TestImports " "}} {{join .XTestImports " "}}`, module+"...")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	graph := map[string]imports{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module)
		var imps imports
		list := &imps.code
		for _, imp := range f[1:] {
			if imp == "|" {
				list = &imps.tests
				continue
			}
			if rel, ok := strings.CutPrefix(imp, module); ok && rel != pkg && !slices.Contains(*list, rel) {
				*list = append(*list, rel)
			}
		}
		graph[pkg] = imps
	}
	if len(graph) < 10 {
		t.Fatalf("go list found %d packages; wrong directory?", len(graph))
	}
	return graph
}

// TestImports fails when a package imports one its layer may not.
func TestImports(t *testing.T) {
	for _, v := range violations(moduleGraph(t)) {
		t.Error(v)
	}
}

// TestRules shows that the rules catch what they are for.
func TestRules(t *testing.T) {
	for _, tc := range []struct {
		pkg, imp string
		ok       bool
	}{
		{"internal/sessionmesh", "internal/dataplane/server", false},
		{"internal/sessionmesh/mesh", "internal/routing", false},
		{"internal/sessionmesh", "internal/sessionmesh/store", true},
		{"internal/translate", "internal/dataplane/proxy", false},
		{"internal/translate", "internal/routing", true},
		{"internal/routing", "internal/translate", false},
		{"internal/routingx", "internal/translate", false}, // no layer
		{"internal/dataplane/server", "internal/source/kube", false},
		{"internal/dataplane/server", "internal/replica", false},
		{"internal/dataplane/tlsconfig", "internal/sessionmesh", true},
		{"internal/dataplane/server", "internal/sessionmesh/store", false},
		{"internal/source/kube", "internal/dataplane/server", false},
		{"internal/replica", "internal/source/kube", false},
		{"cmd/meshgate", "internal/replica", true},
		{"internal/replica", "cmd/meshgate", false},
	} {
		got := len(violations(map[string]imports{tc.pkg: {code: []string{tc.imp}}})) == 0
		if got != tc.ok {
			t.Errorf("%s → %s allowed %v, want %v", tc.pkg, tc.imp, got, tc.ok)
		}
	}
}

// Tests may import more than the code, within bounds.
func TestTestRules(t *testing.T) {
	ok := violations(map[string]imports{
		"internal/source/kube":         {tests: []string{"internal/replica", "internal/testkit"}},
		"internal/sessionmesh":         {tests: []string{"internal/testkit"}},
		"internal/dataplane/server":    {tests: []string{"internal/sessionmesh"}},
		"internal/dataplane/tlsconfig": {code: []string{"internal/sessionmesh"}},
	})
	if len(ok) != 0 {
		t.Errorf("allowed imports refused: %v", ok)
	}
	bad := violations(map[string]imports{
		"internal/sessionmesh":      {tests: []string{"internal/dataplane/server"}},
		"internal/translate":        {tests: []string{"internal/replica"}},
		"internal/dataplane/server": {code: []string{"internal/sessionmesh/store"}},
	})
	if len(bad) != 3 {
		t.Errorf("want 3 violations, got %v", bad)
	}
}
