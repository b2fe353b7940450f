package chart

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// grant is one (API group, resource, verb) an RBAC rule allows.
type grant struct{ group, resource, verb string }

func (g grant) String() string { return fmt.Sprintf("%s/%s:%s", g.group, g.resource, g.verb) }

type grantSet map[grant]bool

func (s grantSet) sorted() []string {
	var out []string
	for g := range s {
		out = append(out, g.String())
	}
	sort.Strings(out)
	return out
}

// grantsOf expands rules into grants. Rules the chart must never need —
// wildcards, resourceNames, non-resource URLs — fail the test, so the
// set comparison below stays exact.
func grantsOf(t *testing.T, rules []rbacv1.PolicyRule) grantSet {
	t.Helper()
	out := grantSet{}
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			t.Errorf("rule %+v uses nonResourceURLs/resourceNames", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" {
						t.Errorf("wildcard in rule %+v", r)
					}
					out[grant{g, res, v}] = true
				}
			}
		}
	}
	return out
}

func typedRules(t *testing.T, objs []*unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var out []rbacv1.PolicyRule
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			out = append(out, typed[rbacv1.ClusterRole](t, o).Rules...)
		case "Role":
			out = append(out, typed[rbacv1.Role](t, o).Rules...)
		}
	}
	return out
}

// namespacedOnly are the grants the chart gives in the release namespace
// only (a Role) although role.yaml lists them cluster-wide: the mesh CA
// Secret and the leader-election Lease live there.
var namespacedOnly = grantSet{
	{"", "secrets", "create"}: true,
}

// clusterScoped are the resources (and their subresources) without a
// namespace that meshgate reads or writes: a ClusterRole is the only way
// to grant them, in namespaced mode too. Events are created in the
// namespace of the object they are about.
var clusterScoped = map[string]bool{
	"namespaces": true, "ingressclasses": true, "gatewayclasses": true, "gatewayclasses/status": true, "events": true,
}

func init() {
	for _, v := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
		namespacedOnly[grant{"coordination.k8s.io", "leases", v}] = true
	}
}

// beyondControllers are grants the chart may give although the markers do
// not list them: leader election and event recording (both come from
// controller-runtime, not from a reconciler).
func beyondControllers(g grant) bool {
	return g.group == "coordination.k8s.io" && g.resource == "leases" ||
		(g.group == "" || g.group == "events.k8s.io") && g.resource == "events"
}

// controllerGrants is what the controllers need: config/rbac/role.yaml as
// committed, united with role.yaml regenerated from the kubebuilder
// markers right now, so a marker added without `make generate` still
// counts.
func controllerGrants(t *testing.T) grantSet {
	t.Helper()
	need := roleFileGrants(t, filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if len(need) == 0 {
		t.Fatal("config/rbac/role.yaml grants nothing")
	}
	for g := range regeneratedGrants(t) {
		need[g] = true
	}
	return need
}

func roleFileGrants(t *testing.T, path string) grantSet {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return grantsOf(t, typedRules(t, objs))
}

// regeneratedGrants runs controller-gen's rbac generator over
// internal/source/kube, as hack/generate.sh does, into a temporary directory.
func regeneratedGrants(t *testing.T) grantSet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cgPath, err := exec.CommandContext(ctx, filepath.Join(repoRoot, "hack", "controller-gen.sh")).Output()
	if err != nil {
		t.Fatalf("hack/controller-gen.sh: %v", exitDetail(err))
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(cgPath)), "rbac:roleName=meshgate",
		"paths=./internal/source/kube/...", "output:rbac:artifacts:config="+dir)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen rbac: %v\n%s", err, out)
	}
	return roleFileGrants(t, filepath.Join(dir, "role.yaml"))
}

func exitDetail(err error) error {
	if ee, ok := err.(*exec.ExitError); ok {
		return fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return err
}

// TestRBAC: for every render case, the chart grants what the controllers
// need (minus what the values turned off) and nothing else; grants that
// role.yaml has cluster-wide but that only concern the release namespace
// come from a Role there; bindings name the pod's ServiceAccount.
func TestRBAC(t *testing.T) {
	need := controllerGrants(t)
	for _, tc := range allCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.in)
			cluster := grantsOf(t, typedRules(t, r.find("ClusterRole")))
			ns := grantsOf(t, typedRules(t, r.find("Role")))
			vals, err := tc.in.values()
			if err != nil {
				t.Fatal(err)
			}
			leaderElect := lookupBool(vals, true, "controller", "leaderElect")
			ownCA := lookupString(vals, "meshCA", "existingSecret") != ""
			namespaced := lookupBool(vals, false, "controller", "namespaced")

			var missing, extra, misplaced []string
			for g := range need {
				switch {
				case g.resource == "leases" && !leaderElect, g == grant{"", "secrets", "create"} && ownCA:
					if cluster[g] || ns[g] {
						extra = append(extra, g.String()+" (turned off by values)")
					}
				case cluster[g]:
					if namespacedOnly[g] || namespaced && !clusterScoped[g.resource] {
						misplaced = append(misplaced, g.String()+" granted cluster-wide")
					}
				case ns[g]:
					if !namespacedOnly[g] && !(namespaced && !clusterScoped[g.resource]) {
						misplaced = append(misplaced, g.String()+" granted in one namespace only")
					}
				default:
					missing = append(missing, g.String())
				}
			}
			for _, s := range []grantSet{cluster, ns} {
				for g := range s {
					if !need[g] && !beyondControllers(g) {
						extra = append(extra, g.String())
					}
				}
			}
			for _, l := range []struct {
				what string
				list []string
			}{{"missing", missing}, {"beyond what the controllers need", extra}, {"misplaced", misplaced}} {
				if len(l.list) > 0 {
					slices.Sort(l.list)
					t.Errorf("chart RBAC %s: %v\ncontrollers need: %v", l.what, l.list, need.sorted())
				}
			}
			checkBindings(t, r, tc.in.Namespace)
		})
	}
}

// checkBindings: every (Cluster)RoleBinding binds a rendered role of the
// matching kind to the Deployment's ServiceAccount, and every rendered
// role is bound.
func checkBindings(t *testing.T, r *rendered, namespace string) {
	t.Helper()
	sa := deploymentSA(t, r)
	for _, pair := range [][2]string{{"ClusterRoleBinding", "ClusterRole"}, {"RoleBinding", "Role"}} {
		bound := map[string]bool{}
		for _, o := range r.find(pair[0]) {
			var ref rbacv1.RoleRef
			var subjects []rbacv1.Subject
			if pair[0] == "ClusterRoleBinding" {
				b := typed[rbacv1.ClusterRoleBinding](t, o)
				ref, subjects = b.RoleRef, b.Subjects
			} else {
				b := typed[rbacv1.RoleBinding](t, o)
				ref, subjects = b.RoleRef, b.Subjects
			}
			want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: namespace}}
			if ref.Kind != pair[1] || !slices.Equal(subjects, want) {
				t.Errorf("%s %s: roleRef %+v subjects %+v, want %s bound to %v", pair[0], o.GetName(), ref, subjects, pair[1], want)
			}
			bound[ref.Name] = true
		}
		for _, o := range r.find(pair[1]) {
			if !bound[o.GetName()] {
				t.Errorf("%s %s is not bound", pair[1], o.GetName())
			}
		}
	}
}

func deploymentSA(t *testing.T, r *rendered) string {
	t.Helper()
	deps := r.find("Deployment")
	if len(deps) != 1 {
		t.Fatalf("%d Deployments", len(deps))
	}
	sa, _, _ := unstructured.NestedString(deps[0].Object, "spec", "template", "spec", "serviceAccountName")
	return sa
}

func lookupBool(m map[string]any, def bool, path ...string) bool {
	v, ok := lookup(m, path...).(bool)
	if !ok {
		return def
	}
	return v
}

func lookupString(m map[string]any, path ...string) string {
	v, _ := lookup(m, path...).(string)
	return v
}

// lookup walks merged values; values.yaml defaults are not merged in, so
// a missing key means "default".
func lookup(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}
