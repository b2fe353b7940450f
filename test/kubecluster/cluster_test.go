package kubecluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
	"github.com/meshgate/meshgate/test/kubecluster"
)

// One cluster for the package's tests (starting it takes seconds).
var cluster *kubecluster.Cluster

func TestMain(m *testing.M) {
	r := &harness.Runner{Out: os.Stderr}
	code := func() int {
		defer r.Close()
		dir, err := os.MkdirTemp("", "kubecluster-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if cluster, err = kubecluster.Start(r, kubecluster.Options{Dir: dir}); err != nil {
			fmt.Fprintln(os.Stderr, "start test cluster:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// echoReply is the part of the echo server's JSON reply the tests read.
type echoReply struct {
	Path      string `json:"path"`
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Pod       string `json:"pod"`
}

// TestDeploymentPodsServeOnTheirIPs is the harness's proof: a Deployment of
// the Gateway API echo server becomes Ready Pods (kube-controller-manager's
// deployment and replicaset controllers, the node agent's scheduling and
// processes), its Service gets an EndpointSlice of the Pod IPs (the
// endpointslice controller), each Pod answers on its IP from the host with
// its own name and namespace (downward-API environment), its log is
// readable through the API server, scaling down stops a process and shrinks
// the EndpointSlice, and deleting the namespace removes everything.
func TestDeploymentPodsServeOnTheirIPs(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t, "smoke")
	mustCreate(t, echoService(ns, "echo"), echoDeployment(ns, "echo", 2))
	pods := waitReadyPods(t, ns, "echo", 2)
	waitSliceAddresses(t, ns, "echo", podIPs(pods))

	for _, p := range pods {
		got := getEcho(t, "http://"+net.JoinHostPort(p.Status.PodIP, "3000")+"/smoke?x=1")
		if got.Pod != p.Name || got.Namespace != ns || got.Service != "echo" || got.Path != "/smoke?x=1" {
			t.Fatalf("pod %s at %s answered %+v", p.Name, p.Status.PodIP, got)
		}
		logs, err := cluster.Clientset.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: "echo"}).DoRaw(ctx)
		if err != nil {
			t.Fatalf("logs of %s through the API server: %v", p.Name, err)
		}
		if !strings.Contains(string(logs), "Echoing back request made to /smoke?x=1") {
			t.Fatalf("log of %s lacks the request:\n%s", p.Name, logs)
		}
	}

	scale(t, ns, "echo", 1)
	left := waitReadyPods(t, ns, "echo", 1)
	waitSliceAddresses(t, ns, "echo", podIPs(left))
	for _, p := range pods {
		if p.Name != left[0].Name {
			waitRefused(t, net.JoinHostPort(p.Status.PodIP, "3000"))
		}
	}

	deleteNamespace(t, ns)
	waitRefused(t, net.JoinHostPort(left[0].Status.PodIP, "3000"))
}

// TestVolumesArgsAndDNSStandIn runs the CoreDNS image of the Gateway API
// suite as configured there (a ConfigMap volume at /root, args -conf
// /root/Corefile) and the echo server with a Secret volume as its TLS
// certificate: the stand-ins see the files where the Pod spec mounts them.
func TestVolumesArgsAndDNSStandIn(t *testing.T) {
	ns := newNamespace(t, "volumes")
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: ns},
		Data:       map[string]string{"Corefile": ".:53 {\n  forward . 8.8.8.8\n}\nfoo.bar.com:53 {\n  whoami\n}\n"},
	}
	d := deployment(ns, "dns", 1, corev1.Container{
		Name: "coredns", Image: kubecluster.CoreDNSImage + ":v1.12.2",
		Args:         []string{"-conf", "/root/Corefile"},
		VolumeMounts: []corev1.VolumeMount{{Name: "conf", MountPath: "/root"}},
	})
	d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"}}}}}
	mustCreate(t, cm, d)
	dnsPod := waitReadyPods(t, ns, "dns", 1)[0]
	addr := net.JoinHostPort(dnsPod.Status.PodIP, "53")
	if rc := dnsQuery(t, addr, "foo.bar.com."); rc != dnsmessage.RCodeSuccess {
		t.Fatalf("whoami zone answered %v", rc)
	}
	if rc := dnsQuery(t, addr, "example.com."); rc != dnsmessage.RCodeRefused {
		t.Fatalf("a name outside the whoami zone answered %v, want Refused (never forwarded)", rc)
	}

	certPEM, keyPEM := selfSigned(t, "abc.example.com")
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM},
	}
	e := echoDeployment(ns, "tls", 1)
	c := &e.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "TLS_SERVER_CERT", Value: "/etc/secret-volume/crt"},
		corev1.EnvVar{Name: "TLS_SERVER_PRIVKEY", Value: "/etc/secret-volume/key"})
	c.VolumeMounts = []corev1.VolumeMount{{Name: "secret-volume", MountPath: "/etc/secret-volume"}}
	e.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "secret-volume", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: "tls", Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "crt"}, {Key: "tls.key", Path: "key"}}}}}}
	c.Ports = []corev1.ContainerPort{{ContainerPort: 3000}, {ContainerPort: 8443}}
	mustCreate(t, sec, e)
	tlsPod := waitReadyPods(t, ns, "tls", 1)[0]
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "abc.example.com"}}}
	resp, err := hc.Get("https://" + net.JoinHostPort(tlsPod.Status.PodIP, "8443") + "/")
	if err != nil {
		t.Fatalf("HTTPS to the echo server with the Secret's certificate: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS echo: %s", resp.Status)
	}
}

// selfSigned returns a PEM certificate and key for host.
func selfSigned(t *testing.T, host string) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

func dnsQuery(t *testing.T, addr, name string) dnsmessage.RCode {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("DNS query %s to %s: %v", name, addr, err)
	}
	var p dnsmessage.Parser
	h, err := p.Start(buf[:n])
	if err != nil || h.ID != 7 || !h.Response {
		t.Fatalf("bad DNS reply %x (%v)", buf[:n], err)
	}
	return h.RCode
}

func echoService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(3000)}},
		},
	}
}

func echoDeployment(ns, name string, replicas int32) *appsv1.Deployment {
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	return deployment(ns, name, replicas, corev1.Container{
		Name: "echo", Image: kubecluster.GatewayEchoImage + ":v1.5.1",
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: field("metadata.name")},
			{Name: "NAMESPACE", ValueFrom: field("metadata.namespace")},
			{Name: "SERVICE_NAME", Value: name},
		},
	})
}

func deployment(ns, name string, replicas int32, c corev1.Container) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
			},
		},
	}
}

func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns, err := cluster.Clientset.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Clientset.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

func mustCreate(t *testing.T, objs ...any) {
	t.Helper()
	ctx := t.Context()
	cs := cluster.Clientset
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Secret:
			_, err = cs.CoreV1().Secrets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("mustCreate: %T", o)
		}
		if err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
}

// eventually polls cond (testkit.Poll) for up to a minute.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var state string
	if err := testkit.Until(time.Minute, func() bool {
		var ok bool
		ok, state = cond()
		return ok
	}); err != nil {
		t.Fatalf("timed out waiting for %s (last: %s)\n%s", what, state, cluster.Diagnose())
	}
}

// waitReadyPods waits until the Pods labelled app=name are exactly n, all
// Ready with an IP, none terminating, and returns them.
func waitReadyPods(t *testing.T, ns, name string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, fmt.Sprintf("%d ready pods of %s/%s", n, ns, name), func() (bool, string) {
		list, err := cluster.Clientset.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, err.Error()
		}
		pods = list.Items
		var states []string
		ready := 0
		for _, p := range pods {
			ok := p.DeletionTimestamp == nil && p.Status.PodIP != "" && podReady(&p)
			if ok {
				ready++
			}
			states = append(states, fmt.Sprintf("%s phase=%s ready=%t ip=%s", p.Name, p.Status.Phase, ok, p.Status.PodIP))
		}
		return len(pods) == n && ready == n, strings.Join(states, "; ")
	})
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podIPs(pods []corev1.Pod) []string {
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.Status.PodIP)
	}
	return ips
}

// waitSliceAddresses waits until the Service's EndpointSlices list exactly
// ips as ready endpoints.
func waitSliceAddresses(t *testing.T, ns, svc string, ips []string) {
	t.Helper()
	want := map[string]bool{}
	for _, ip := range ips {
		want[ip] = true
	}
	eventually(t, fmt.Sprintf("EndpointSlices of %s/%s = %v", ns, svc, ips), func() (bool, string) {
		list, err := cluster.Clientset.DiscoveryV1().EndpointSlices(ns).List(t.Context(),
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err != nil {
			return false, err.Error()
		}
		got := map[string]bool{}
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					for _, a := range e.Addresses {
						got[a] = true
					}
				}
			}
		}
		if len(got) != len(want) {
			return false, fmt.Sprint(got)
		}
		for ip := range want {
			if !got[ip] {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})
}

func getEcho(t *testing.T, url string) echoReply {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	var r echoReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
	return r
}

func scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	s, err := cluster.Clientset.AppsV1().Deployments(ns).GetScale(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if _, err := cluster.Clientset.AppsV1().Deployments(ns).UpdateScale(t.Context(), name, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitRefused waits until nothing accepts connections at addr (the Pod's
// process and namespace are gone: the host's route answers, nobody
// listens).
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	eventually(t, "no listener at "+addr, func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return false, "accepting"
		}
		return true, ""
	})
}

func deleteNamespace(t *testing.T, ns string) {
	t.Helper()
	if err := cluster.Clientset.CoreV1().Namespaces().Delete(t.Context(), ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "namespace "+ns+" gone", func() (bool, string) {
		_, err := cluster.Clientset.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, fmt.Sprint(err)
	})
}
