package testkit

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireRoot is the one check of the tests that need root and system
// tools (network namespaces, links and addresses with iproute2's ip, tc):
// it fails t, never skips, when the process is not root or a tool is not
// on PATH, saying why the test needs them (why: "backend network
// namespaces") and how to get them. CI runs as root with
// hack/install-deps.sh's packages, so a missing privilege there is a
// broken machine, not a reason to pass silently. Tests that call it say so
// in their file's or function's doc comment.
func RequireRoot(t testing.TB, why string, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("%s: needs root (CI runs as root); run the tests as root", why)
	}
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s: needs %s on PATH (iproute2; hack/install-deps.sh installs it)", why, strings.Join(missing, ", "))
	}
}
