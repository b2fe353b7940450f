// Package ingressconformance reproduces the scenarios of
// kubernetes-sigs/ingress-controller-conformance (its features/*.feature
// files) step for step as Go tests, against `meshgate run` with default
// settings on the test cluster of test/kubecluster: real Deployments of the
// suite's echo server (the Gateway API echo-basic, which reports the same
// JSON fields), real EndpointSlices from kube-controller-manager, and the
// suite's HTTP client behaviour (see capture in steps_test.go).
//
// The suite leaves the choice of controller to the cluster: its Ingresses
// name no class, so the cluster's default IngressClass must be the
// controller's. The setup creates IngressClass "meshgate" (controller
// meshgate.io/ingress-controller) annotated as the default, as the chart
// does with ingressClass.default=true. meshgate's own flags keep their
// defaults; it listens on 127.0.0.80:80 and :443 and publishes 127.0.0.80
// in Ingress status, where the scenarios send their requests.
//
// docs/conformance/README.md lists every scenario and how to run them.
package ingressconformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshgate/meshgate/test/harness"
	"github.com/meshgate/meshgate/test/kubecluster"
)

// ingressIP is where meshgate listens and what it publishes.
const ingressIP = "127.0.0.80"

var (
	cluster *kubecluster.Cluster
	gate    *kubecluster.Meshgate
	settle  *barrier
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	r := &harness.Runner{Out: os.Stderr}
	defer r.Close()
	dir, err := os.MkdirTemp("", "ingressconformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setup(r, dir); err != nil {
		fmt.Fprintln(os.Stderr, "ingress conformance setup:", err)
		return 1
	}
	return m.Run()
}

func setup(r *harness.Runner, dir string) error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	bins, err := harness.BuildBins(filepath.Join(dir, "bin"))
	if err != nil {
		return err
	}
	cluster, err = kubecluster.Start(r, kubecluster.Options{
		Dir:     dir,
		CRDDirs: []string{filepath.Join(root, "config", "crd", "bases")},
	})
	if err != nil {
		return err
	}
	class := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "meshgate", Annotations: map[string]string{
			networkingv1.AnnotationIsDefaultIngressClass: "true",
		}},
		Spec: networkingv1.IngressClassSpec{Controller: "meshgate.io/ingress-controller"},
	}
	if _, err := cluster.Clientset.NetworkingV1().IngressClasses().Create(context.Background(), class, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("default IngressClass: %w", err)
	}
	if gate, err = cluster.RunMeshgate(r, kubecluster.MeshgateOptions{Bin: bins.Meshgate, IP: ingressIP}); err != nil {
		return err
	}
	settle, err = newBarrier(context.Background())
	return err
}
