package chart

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// fieldManager is the field manager the dry-run applies use (Helm's own
// name, so the server treats them like `helm install --dry-run=server`).
const fieldManager = "helm"

// cluster is a running envtest API server with clients for it.
type cluster struct {
	cfg    *rest.Config
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

// startCluster starts kube-apiserver and etcd from KUBEBUILDER_ASSETS with
// the chart's CRDs and a ServiceMonitor CRD fixture installed. Without
// KUBEBUILDER_ASSETS the test fails under CI=true and is skipped (with the
// command to run) otherwise.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		msg := `KUBEBUILDER_ASSETS is not set; run: KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)" (from the repository root)`
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			t.Fatalf("KUBEBUILDER_ASSETS=%s: %v", assets, err)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              []string{filepath.Join(chartDir, "crds"), filepath.Join(chartDir, "crds", "gateway-api"), filepath.Join("testdata", "servicemonitor-crd.yaml")},
			ErrorIfPathMissing: true,
		},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return &cluster{cfg: cfg, kube: kube, dyn: dyn, mapper: mapper}
}

func (c *cluster) ensureNamespace(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	_, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("namespace %s: %v", name, err)
	}
}

// apply server-side-applies obj; dryRun leaves nothing behind.
func (c *cluster) apply(ctx context.Context, obj *unstructured.Unstructured, dryRun bool) error {
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = c.dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Apply(ctx, obj.GetName(), obj, opts)
	return err
}

// TestApplyServerDryRun sends every object of every render case to a real
// kube-apiserver with a server-side dry run: defaulting, validation
// (including CEL and the CRD schemas) and admission all have to accept it.
// Then it installs the default release for real and asks the API server
// (SubjectAccessReview) whether the ServiceAccount can do what the
// controllers need.
func TestApplyServerDryRun(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The CRDs the chart ships are served.
	if _, err := c.mapper.RESTMapping(schemaGK("meshgate.io", "TLSPolicy")); err != nil {
		t.Fatalf("TLSPolicy CRD not served: %v", err)
	}
	for _, tc := range allCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.in)
			c.ensureNamespace(ctx, t, tc.in.Namespace)
			for _, obj := range r.Objects {
				if err := c.apply(ctx, obj, true); err != nil {
					t.Errorf("%s %s/%s rejected: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
				}
			}
		})
	}

	t.Run("installed-rbac-allows-what-controllers-need", func(t *testing.T) {
		in := renderCases()[0].in
		r := mustRender(t, in)
		c.ensureNamespace(ctx, t, in.Namespace)
		for _, obj := range r.Objects {
			if err := c.apply(ctx, obj, false); err != nil {
				t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
		}
		user := "system:serviceaccount:" + in.Namespace + ":" + deploymentSA(t, r)
		// A namespace other than the release's: cluster-wide grants must
		// reach it, namespaced-only ones must not.
		other := "apps"
		for g := range controllerGrants(t) {
			if got := c.allowed(ctx, t, user, in.Namespace, g); !got {
				t.Errorf("%s may not %s in %s", user, g, in.Namespace)
			}
			want := !namespacedOnly[g]
			if got := c.allowed(ctx, t, user, other, g); got != want {
				t.Errorf("%s: %s in namespace %s allowed=%v, want %v", user, g, other, got, want)
			}
		}
		// The authorizer is really RBAC: something never granted is denied.
		if c.allowed(ctx, t, user, in.Namespace, grant{"", "secrets", "delete"}) {
			t.Error("secrets/delete allowed: the API server does not enforce RBAC, the checks above prove nothing")
		}
	})
}

func (c *cluster) allowed(ctx context.Context, t *testing.T, user, ns string, g grant) bool {
	t.Helper()
	res, sub, _ := cutSub(g.resource)
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: g.verb, Group: g.group, Resource: res, Subresource: sub,
		},
	}}
	out, err := c.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	return out.Status.Allowed
}
