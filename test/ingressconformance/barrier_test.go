package ingressconformance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/kubecluster"
)

// barrier proves that meshgate serves every Ingress and EndpointSlice
// change made before it. meshgate watches each kind through one watch,
// whose events arrive in resourceVersion order, and builds each table from
// its cache. wait bumps a generation n: it points the barrier Service's
// EndpointSlice at the other of its two echo Pods, then moves the barrier
// Ingress's only path to /gen-n, and waits until GET /gen-n is answered by
// that Pod. Such an answer comes from a table built after both writes were
// seen, so from then on meshgate's table reflects every Ingress and
// EndpointSlice written before wait began.
//
// The scenarios need this where the suite relies on timing: it creates the
// Ingress after waiting for endpoints, but the Ingress status alone does not
// prove the endpoints are in the table (two watches), and a deleted
// namespace's Ingresses must be gone from the table before the next
// scenario sends its requests.
type barrier struct {
	pods []corev1.Pod // the two barrier Pods
	gen  int
}

const (
	barrierNS   = "ingress-barrier"
	barrierHost = "barrier.meshgate.test"
)

func newBarrier(ctx context.Context) (*barrier, error) {
	cs := cluster.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: barrierNS}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": "barrier"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "barrier", Namespace: barrierNS},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "echo", Image: kubecluster.GatewayEchoImage + ":v1.5.1",
					Env:   []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
					Ports: []corev1.ContainerPort{{ContainerPort: 3000}},
				}}},
			},
		},
	}
	// No selector: the barrier's EndpointSlices are ours to write.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "barrier", Namespace: barrierNS},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(3000)}}},
	}
	ing := hostIngress(barrierNS, "barrier", barrierHost, "/gen-0", "barrier")
	if _, err := cs.AppsV1().Deployments(barrierNS).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := cs.CoreV1().Services(barrierNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := cs.NetworkingV1().Ingresses(barrierNS).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	b := &barrier{}
	if err := testkit.Until(2*time.Minute, func() bool {
		list, err := cs.CoreV1().Pods(barrierNS).List(ctx, metav1.ListOptions{LabelSelector: "app=barrier"})
		if err == nil && len(list.Items) == 2 && ready(&list.Items[0]) && ready(&list.Items[1]) {
			b.pods = list.Items
			return true
		}
		return false
	}); err != nil {
		return nil, fmt.Errorf("barrier pods not ready: %w\n%s", err, cluster.Diagnose())
	}
	return b, nil
}

func ready(p *corev1.Pod) bool {
	if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// wait: see barrier.
func (b *barrier) wait(t *testing.T) {
	t.Helper()
	b.gen++
	pod := b.pods[b.gen%2]
	path := fmt.Sprintf("/gen-%d", b.gen)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "barrier", Namespace: barrierNS, Labels: map[string]string{
			discoveryv1.LabelServiceName: "barrier",
			discoveryv1.LabelManagedBy:   "ingressconformance.meshgate.test",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{pod.Status.PodIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](3000)}},
	}
	ctx := t.Context()
	slices := cluster.Clientset.DiscoveryV1().EndpointSlices(barrierNS)
	cur, err := slices.Get(ctx, "barrier", metav1.GetOptions{})
	if err == nil {
		slice.ResourceVersion = cur.ResourceVersion
		_, err = slices.Update(ctx, slice, metav1.UpdateOptions{})
	} else {
		_, err = slices.Create(ctx, slice, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("barrier EndpointSlice: %v", err)
	}
	ings := cluster.Clientset.NetworkingV1().Ingresses(barrierNS)
	ing, err := ings.Get(ctx, "barrier", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("barrier Ingress: %v", err)
	}
	ing.Spec.Rules[0].HTTP.Paths[0].Path = path
	if _, err := ings.Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("barrier Ingress: %v", err)
	}
	eventually(t, time.Minute, "meshgate to route "+barrierHost+path+" to "+pod.Name, func() bool {
		req, resp, err := capture(http.MethodGet, "http", barrierHost, path, gate.IP)
		return err == nil && resp.StatusCode == http.StatusOK && req.Pod == pod.Name
	})
}

// hostIngress routes host + path (Exact) to Service svc port 8080.
func hostIngress(ns, name, host, path, svc string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
			Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: path, PathType: ptr.To(networkingv1.PathTypeExact),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 8080}}},
			}}}},
		}}},
	}
}

// waitReadyEndpoints waits until Service ns/name has n ready endpoints in
// its EndpointSlices (the suite waits for its Endpoints object; meshgate,
// like the suite's controllers, reads EndpointSlices).
func waitReadyEndpoints(t *testing.T, ns, name string, n int) {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("%d ready endpoints of %s/%s", n, ns, name), func() bool {
		got, err := readyEndpoints(t.Context(), ns, name)
		return err == nil && got == n
	})
}

func readyEndpoints(ctx context.Context, ns, name string) (int, error) {
	list, err := cluster.Clientset.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return 0, err
	}
	if len(list.Items) == 0 {
		return 0, errors.New("no EndpointSlice")
	}
	seen := map[string]bool{}
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
				seen[e.Addresses[0]] = true
			}
		}
	}
	return len(seen), nil
}
