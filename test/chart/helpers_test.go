package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// kubeVersion is the Kubernetes version the chart is rendered for; it
// matches the kube-apiserver hack/envtest-assets.sh builds.
const kubeVersion = "v1.37.2"

// repoRoot is the meshgate checkout this module lives in.
var repoRoot = func() string {
	p, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return p
}()

// chartDir is charts/meshgate.
var chartDir = filepath.Join(repoRoot, "charts", "meshgate")

// install is one `helm install` invocation: what the tests render is what
// a user types.
type install struct {
	Release    string
	Namespace  string
	Chart      string   // chart directory; "" means chartDir
	ValueFiles []string // -f, relative to repoRoot unless absolute
	Set        []string // --set
	SetString  []string // --set-string
	// APIVersions are extra API versions the cluster serves
	// (--api-versions), e.g. "gateway.networking.k8s.io/v1/GatewayClass".
	APIVersions []string
}

// rendered is the output of one render: the chart's objects (CRDs from
// crds/ first, as Helm installs them) and NOTES.txt.
type rendered struct {
	CRDs    []*unstructured.Unstructured
	Objects []*unstructured.Unstructured
	Notes   string
}

// values merges the value files and --set flags the way the helm CLI does.
func (in install) values() (map[string]any, error) {
	opts := values.Options{StringValues: in.SetString, Values: in.Set}
	for _, f := range in.ValueFiles {
		if !filepath.IsAbs(f) {
			f = filepath.Join(repoRoot, f)
		}
		opts.ValueFiles = append(opts.ValueFiles, f)
	}
	return opts.MergeValues(getter.Providers{})
}

// render renders the chart like `helm install --dry-run` (client only):
// schema validation, kubeVersion check, templates, NOTES.
func render(in install) (*rendered, error) {
	dir := in.Chart
	if dir == "" {
		dir = chartDir
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join(repoRoot, dir)
	}
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	vals, err := in.values()
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	act := action.NewInstall(cfg)
	act.DryRun, act.ClientOnly, act.Replace = true, true, true
	act.ReleaseName, act.Namespace = in.Release, in.Namespace
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return nil, err
	}
	act.KubeVersion = kv
	act.APIVersions = chartutil.VersionSet(in.APIVersions)
	rel, err := act.Run(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	out := &rendered{Notes: rel.Info.Notes}
	if out.Objects, err = decodeObjects([]byte(rel.Manifest)); err != nil {
		return nil, err
	}
	for _, c := range ch.CRDObjects() {
		objs, err := decodeObjects(c.File.Data)
		if err != nil {
			return nil, fmt.Errorf("crd %s: %w", c.Filename, err)
		}
		out.CRDs = append(out.CRDs, objs...)
	}
	return out, nil
}

// mustRender is render for tests that expect success.
func mustRender(t *testing.T, in install) *rendered {
	t.Helper()
	r, err := render(in)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// decodeObjects splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// find returns the objects of a kind.
func (r *rendered) find(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.Objects {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one decodes the only object of kind into a typed value (e.g.
// *appsv1.Deployment); it fails the test unless there is exactly one.
func one[T any](t *testing.T, r *rendered, kind string) *T {
	t.Helper()
	objs := r.find(kind)
	if len(objs) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(objs), kind)
	}
	return typed[T](t, objs[0])
}

// byName decodes the object of kind and name.
func byName[T any](t *testing.T, r *rendered, kind, name string) *T {
	t.Helper()
	for _, o := range r.find(kind) {
		if o.GetName() == name {
			return typed[T](t, o)
		}
	}
	t.Fatalf("no %s named %s", kind, name)
	return nil
}

func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, v, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return v
}

// kinds lists the kinds rendered, sorted, for error messages.
func (r *rendered) kinds() []string {
	var out []string
	for _, o := range r.Objects {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

// readRepoFile reads a file relative to repoRoot.
func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// argValue returns the value of --name=value in args and whether it was
// present.
func argValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}
