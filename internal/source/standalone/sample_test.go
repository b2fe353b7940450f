package standalone

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/translate"
)

// TestSample loads config/samples/standalone/echo.yaml the way the demo
// does: copied into a directory next to a generated echo-tls Secret.
func TestSample(t *testing.T) {
	sample, err := os.ReadFile("../../../config/samples/standalone/echo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echo.yaml"), sample, 0o600); err != nil {
		t.Fatal(err)
	}
	crt, key := demoCert(t, "echo.meshgate.test")
	secret := "apiVersion: v1\nkind: Secret\nmetadata: {name: echo-tls, namespace: default}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n" +
		indent(crt) + "  tls.key: |\n" + indent(key)
	if err := os.WriteFile(filepath.Join(dir, "echo-tls.yaml"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	holder := &routing.Holder{}
	results := make(chan Result, 4)
	src, err := New(Config{Path: dir, Holder: holder, PollInterval: -1,
		Build:    translate.Options{L4ConfigMap: "default/meshgate-l4"},
		OnReload: func(r Result) { results <- r }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	r := <-results
	if r.Err != nil || len(r.Problems) != 0 || len(r.Skipped) != 0 {
		t.Fatalf("sample: %+v", r)
	}
	tbl := holder.Load()
	b, vh := tbl.HTTP.Backend("echo.meshgate.test:8443", "/anything")
	if b == nil || b.Name != "default/echo:80" || strings.Join(b.Endpoints, ",") != "127.0.0.1:9000" || !vh.SSLRedirect {
		t.Errorf("http: %+v %+v", b, vh)
	}
	th := tbl.TLS.Lookup("echo.meshgate.test")
	if th == nil || th.Certificate.Leaf.Subject.CommonName != "echo.meshgate.test" || tbl.TLS.Default == nil {
		t.Errorf("tls: %+v", th)
	}
	if len(tbl.L4) != 1 || tbl.L4[0].Protocol != routing.L4UDP || tbl.L4[0].Port != 5353 ||
		strings.Join(tbl.L4[0].Backend.Endpoints, ",") != "127.0.0.1:9053" {
		t.Errorf("l4: %+v", tbl.L4)
	}
}

func indent(pemText []byte) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(strings.TrimSpace(string(pemText)), "\n") {
		b.WriteString("    " + strings.TrimRight(l, "\n") + "\n")
	}
	return b.String()
}

func demoCert(t *testing.T, cn string) (crt, key []byte) {
	c := testkit.NewCert(t, testkit.Spec{Names: []string{cn}})
	return c.CertPEM, c.KeyPEM
}
