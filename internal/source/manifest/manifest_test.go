package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const good = `# leading comment
apiVersion: v1
kind: ServiceAccount
metadata:
  name: demo
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: meshgate
spec:
  controller: meshgate.io/ingress-controller
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  ports:
  - name: http
    port: 80
    targetPort: 9000
---
---
# only a comment
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: demo
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: http, port: 9000}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: meshgate.io/v1alpha1
kind: TLSPolicy
metadata: {name: strict}
spec:
  minVersion: "1.3"
  sessionResumption: {mode: TicketKeys, lifetime: 10m}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: l4}
  data: {udp.5353: default/udp-echo:5353}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: app}
`

const gatewayDocs = `apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {env: prod}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: meshgate}
spec: {controllerName: meshgate.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: meshgate
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: team}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules: [{backendRefs: [{name: echo, port: 80}]}]
`

// TestDecodeGatewayAPI reads Gateway API objects and Namespaces (whose
// labels allowedRoutes selectors match) strictly.
func TestDecodeGatewayAPI(t *testing.T) {
	objs, skipped, err := newLoader(t).Decode("gw.yaml", []byte(gatewayDocs))
	if err != nil || len(skipped) != 0 || len(objs) != 4 {
		t.Fatalf("objs %d, skipped %v, err %v", len(objs), skipped, err)
	}
	if ns := objs[0].(*corev1.Namespace); ns.Labels["env"] != "prod" {
		t.Errorf("namespace = %+v", ns)
	}
	if gw := objs[2].(*gatewayv1.Gateway); gw.Namespace != "default" || gw.Spec.Listeners[0].Port != 8080 {
		t.Errorf("gateway = %+v", gw)
	}
	if r := objs[3].(*gatewayv1.HTTPRoute); r.Namespace != "team" || *r.Spec.Rules[0].BackendRefs[0].Port != 80 {
		t.Errorf("route = %+v", r)
	}
	bad := strings.Replace(gatewayDocs, "listeners:", "listenerz:", 1)
	if _, _, err := newLoader(t).Decode("gw.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "listenerz") {
		t.Errorf("unknown field accepted: %v", err)
	}
}

func newLoader(t testing.TB) *Loader {
	l, err := NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDecodeGood(t *testing.T) {
	objs, skipped, err := newLoader(t).Decode("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, strings.TrimPrefix(strings.TrimPrefix(typeName(o), "*v1."), "*v1alpha1.")+" "+o.GetNamespace()+"/"+o.GetName())
	}
	want := "IngressClass /meshgate,Service default/echo,EndpointSlice demo/echo-1,TLSPolicy default/strict,ConfigMap default/l4"
	if strings.Join(got, ",") != want {
		t.Errorf("objects:\n%s\nwant:\n%s", strings.Join(got, ","), want)
	}
	if len(skipped) != 2 || skipped[0].Kind != "ServiceAccount" || skipped[0].Document != 1 ||
		skipped[1].Kind != "Deployment" || skipped[1].Document != 7 {
		t.Errorf("skipped = %v", skipped)
	}
	p := objs[3].(*v1alpha1.TLSPolicy)
	if p.Spec.MinVersion != "1.3" || p.Spec.SessionResumption.Lifetime.Duration.String() != "10m0s" {
		t.Errorf("policy = %+v", p.Spec)
	}
	es := objs[2].(*discoveryv1.EndpointSlice)
	if es.Endpoints[0].Addresses[0] != "127.0.0.1" || *es.Ports[0].Port != 9000 {
		t.Errorf("slice = %+v", es)
	}
	if objs[1].(*corev1.Service).Spec.Ports[0].TargetPort.IntValue() != 9000 {
		t.Error("targetPort lost")
	}
	if objs[0].(*networkingv1.IngressClass).Spec.Controller != "meshgate.io/ingress-controller" {
		t.Error("controller lost")
	}
}

func typeName(o metav1.Object) string { return fmt.Sprintf("%T", o) }

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", "document 1 (x): apiVersion and kind are required"},
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n", `document 1 (Service x): strict decoding error: unknown field "spec.portz"`},
		{"unknown policy field", "apiVersion: meshgate.io/v1alpha1\nkind: TLSPolicy\nmetadata: {name: p}\nspec: {minVersoin: '1.3'}\n", `(TLSPolicy p): json: unknown field "minVersoin"`},
		{"old version", "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata: {name: old, namespace: x}\n", "document 2 (Ingress x/old): networking.k8s.io/v1beta1 is not supported; use version v1"},
		{"no name", "apiVersion: v1\nkind: Secret\nmetadata: {namespace: a}\n", "metadata.name is required"},
		{"cluster scoped with namespace", "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: a, namespace: b}\n", "cluster-scoped"},
		{"duplicate", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n", "document 2 (ConfigMap default/a): also defined at f.yaml: document 1"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: a}\ndata: {y: b}\n", `key "data" already set in map`},
		{"bad yaml", "apiVersion: v1\nkind: [\n", "f.yaml: document 1"},
		{"scalar document", "hello\n", "not a Kubernetes object"},
		{"bad types", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: 3}\n", "(Service x)"},
	}
	for _, tc := range cases {
		_, _, err := newLoader(t).Decode("f.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cm := func(name string) string { return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\n" }
	write("b.yml", cm("b"))
	write("a.yaml", cm("a"))
	write("c.json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`)
	write("d.txt", cm("d"))
	write(".hidden.yaml", cm("hidden"))
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub.yaml", "e.yaml"), []byte(cm("e")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "dangling.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "d.txt"), filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	objs, _, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetName())
	}
	if got := strings.Join(names, ","); got != "a,b,c,d" { // link.yaml → d
		t.Errorf("loaded %s, want a,b,c,d", got)
	}
	// A single file is read whatever its extension.
	objs, _, err = Load(filepath.Join(dir, "d.txt"))
	if err != nil || len(objs) != 1 {
		t.Errorf("single file: %v %v", objs, err)
	}
	// Duplicates across files name both.
	write("z.yaml", cm("a"))
	if _, _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "a.yaml: document 1") || !strings.Contains(err.Error(), "z.yaml") {
		t.Errorf("duplicate across files: %v", err)
	}
	if _, _, err := Load(filepath.Join(dir, "nope")); err == nil {
		t.Error("missing path: no error")
	}
}

// FuzzLoad feeds arbitrary bytes to the decoder: it must not panic, and
// whatever it accepts must be named, supported and namespaced correctly.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: List, items: []}]\n"))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"type":"kubernetes.io/tls","stringData":{"tls.crt":"x"}}`))
	l := newLoader(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, skipped, err := l.Decode("fuzz.yaml", data)
		if err != nil {
			if objs != nil || skipped != nil {
				t.Fatal("results returned with an error")
			}
			return
		}
		for _, o := range objs {
			_, clusterScoped := o.(*networkingv1.IngressClass)
			if o.GetName() == "" || (o.GetNamespace() == "") != clusterScoped {
				t.Fatalf("accepted %T %q/%q", o, o.GetNamespace(), o.GetName())
			}
		}
	})
}
