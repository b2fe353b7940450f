package ingressconformance

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
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/kubecluster"
)

// The steps below are the suite's step definitions (test/conformance/*/
// feature.go, test/kubernetes, test/http, test/state of
// ingress-controller-conformance), reimplemented: same objects, same
// client behaviour, same assertions. Where the suite polls with a 5 s
// interval we poll every 100 ms; where it waits for a fixed time to see
// that nothing happens we wait for an event instead (see noAddress).

// capturedRequest is what the echo server reports about the request it
// received (its JSON reply).
type capturedRequest struct {
	Path      string              `json:"path"`
	Host      string              `json:"host"`
	Method    string              `json:"method"`
	Proto     string              `json:"proto"`
	Headers   map[string][]string `json:"headers"`
	Namespace string              `json:"namespace"`
	Ingress   string              `json:"ingress"`
	Service   string              `json:"service"`
	Pod       string              `json:"pod"`
}

// capturedResponse is what the client saw.
type capturedResponse struct {
	StatusCode  int
	Proto       string
	Headers     http.Header
	TLSHostname string // first DNS name of the server certificate
}

// scenario is the state of one scenario (the suite's state.Scenario).
type scenario struct {
	t           *testing.T
	start       time.Time
	namespace   string
	ingressName string
	address     string // Ingress status IP or hostname
	req         *capturedRequest
	resp        *capturedResponse
}

func newScenario(t *testing.T) *scenario { return &scenario{t: t, start: time.Now()} }

// logf logs with the time since the scenario began.
func (s *scenario) logf(format string, args ...any) {
	s.t.Helper()
	s.t.Logf("%6.2fs "+format, append([]any{time.Since(s.start).Seconds()}, args...)...)
}

// aNewRandomNamespace: "Given a new random namespace". The namespace (and
// everything in it) is deleted after the scenario, as the suite's
// AfterScenario does; we also wait until its Ingresses are gone, so that
// none of them (a default backend, say) is still served in the next
// scenario (whose barrier then proves meshgate saw the deletions). The rest
// of the namespace goes on being deleted in the background.
func (s *scenario) aNewRandomNamespace() {
	s.t.Helper()
	nss := cluster.Clientset.CoreV1().Namespaces()
	ns, err := nss.Create(s.t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "ingress-conformance-",
		Labels:       map[string]string{"app.kubernetes.io/name": "ingress-conformance"},
	}}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("create namespace: %v", err)
	}
	s.namespace = ns.Name
	s.t.Cleanup(func() {
		ctx := context.Background()
		// The namespace controller takes seconds to reach the Ingresses;
		// deleting them first ends in the same state sooner.
		_ = cluster.Clientset.NetworkingV1().Ingresses(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = nss.Delete(ctx, ns.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			PropagationPolicy:  ptr.To(metav1.DeletePropagationBackground),
		})
		gone := func() bool {
			list, err := cluster.Clientset.NetworkingV1().Ingresses(ns.Name).List(ctx, metav1.ListOptions{})
			return apierrors.IsNotFound(err) || (err == nil && len(list.Items) == 0)
		}
		if err := testkit.Until(2*time.Minute, gone); err != nil {
			s.t.Errorf("Ingresses of namespace %s not deleted: %v\n%s", ns.Name, err, cluster.Diagnose())
		}
	})
}

// aSelfSignedTLSSecret: `Given a self-signed TLS secret named "name" for
// the "host" hostname`.
func (s *scenario) aSelfSignedTLSSecret(name, host string) {
	s.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host, Organization: []string{"Acme Co"}},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		s.t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		s.t.Fatal(err)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
		},
	}
	if _, err := cluster.Clientset.CoreV1().Secrets(s.namespace).Create(s.t.Context(), sec, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("create secret: %v", err)
	}
}

// anIngressNamedWithSpec: `Given an Ingress resource named "name" with
// this spec:` (the doc string is an IngressSpec).
func (s *scenario) anIngressNamedWithSpec(name, spec string) {
	s.t.Helper()
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace}}
	if err := yaml.UnmarshalStrict([]byte(spec), &ing.Spec); err != nil {
		s.t.Fatalf("ingress spec: %v", err)
	}
	s.createIngress(ing)
}

// anIngressResource: "Given an Ingress resource" (the doc string is a
// whole manifest), also "Given an Ingress resource in a new random
// namespace" after aNewRandomNamespace.
func (s *scenario) anIngressResource(manifest string) {
	s.t.Helper()
	ing := &networkingv1.Ingress{}
	if err := yaml.UnmarshalStrict([]byte(manifest), ing); err != nil {
		s.t.Fatalf("ingress manifest: %v", err)
	}
	ing.Namespace = s.namespace
	s.createIngress(ing)
}

// createIngress deploys an echo server per backend Service, waits for
// their endpoints, then creates the Ingress (the suite's
// DeploymentsFromIngress + NewIngress).
func (s *scenario) createIngress(ing *networkingv1.Ingress) {
	s.t.Helper()
	backends := []*networkingv1.IngressServiceBackend{}
	if ing.Spec.DefaultBackend != nil {
		backends = append(backends, ing.Spec.DefaultBackend.Service)
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			backends = append(backends, p.Backend.Service)
		}
	}
	var services []string
	for _, b := range backends {
		if b == nil || slices.Contains(services, b.Name) {
			continue // the suite keeps an existing deployment
		}
		services = append(services, b.Name)
		s.newEchoDeployment(ing.Name, b.Name, b.Port.Name, b.Port.Number)
	}
	// The suite waits for each Service's endpoint before creating the next
	// Deployment; waiting for all at the end ends in the same state, sooner.
	for _, svc := range services {
		waitReadyEndpoints(s.t, s.namespace, svc, 1)
	}
	s.logf("endpoints of %v ready", services)
	if _, err := cluster.Clientset.NetworkingV1().Ingresses(s.namespace).Create(s.t.Context(), ing, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("create ingress: %v", err)
	}
	s.ingressName = ing.Name
}

// newEchoDeployment is the suite's NewEchoDeployment: Deployment
// "<ingress>-<service>" of the echo server (env POD_NAME, NAMESPACE,
// INGRESS_NAME, SERVICE_NAME; port 3000 named as the Service port;
// readiness and liveness on /health) and Service <service> (port as given,
// 8080 when none, named as given, targetPort 3000).
func (s *scenario) newEchoDeployment(ingress, service, portName string, port int32) {
	s.t.Helper()
	name := ingress + "-" + service
	labels := map[string]string{"app": name}
	probe := &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(3000), Scheme: corev1.URISchemeHTTP}},
		InitialDelaySeconds: 1, PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 10,
	}
	field := func(p string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: p}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "ingress-conformance-echo",
					Image: kubecluster.IngressEchoImageStaging + "@sha256:317f2dfad5e4e937275e79f783e5e7b81a88f0123a3988e8b06f9d7b1eb435c9",
					Env: []corev1.EnvVar{
						{Name: "POD_NAME", ValueFrom: field("metadata.name")},
						{Name: "NAMESPACE", ValueFrom: field("metadata.namespace")},
						{Name: "INGRESS_NAME", Value: ingress},
						{Name: "SERVICE_NAME", Value: service},
					},
					Ports:          []corev1.ContainerPort{{Name: portName, ContainerPort: 3000}},
					LivenessProbe:  probe,
					ReadinessProbe: probe,
				}}},
			},
		},
	}
	if _, err := cluster.Clientset.AppsV1().Deployments(s.namespace).Create(s.t.Context(), d, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("create deployment %s: %v", name, err)
	}
	if port == 0 {
		port = 8080
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: portName, Port: port, TargetPort: intstr.FromInt32(3000)}},
		},
	}
	if _, err := cluster.Clientset.CoreV1().Services(s.namespace).Create(s.t.Context(), svc, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("create service %s: %v", service, err)
	}
}

// theIngressStatusShowsTheAddress: "Then The Ingress status shows the IP
// address or FQDN where it is exposed". Then settle makes sure meshgate
// also serves the EndpointSlices awaited before (see barrier).
func (s *scenario) theIngressStatusShowsTheAddress() {
	s.t.Helper()
	eventually(s.t, 2*time.Minute, "address in the status of Ingress "+s.namespace+"/"+s.ingressName, func() bool {
		addrs := s.statusAddresses()
		if len(addrs) > 0 {
			s.address = addrs[0]
		}
		return len(addrs) > 0
	})
	s.logf("status address %s", s.address)
	settle.wait(s.t)
	s.logf("meshgate serves the scenario's objects")
}

func (s *scenario) statusAddresses() []string {
	ing, err := cluster.Clientset.NetworkingV1().Ingresses(s.namespace).Get(s.t.Context(), s.ingressName, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range ing.Status.LoadBalancer.Ingress {
		if a.IP != "" {
			out = append(out, a.IP)
		}
		if a.Hostname != "" {
			out = append(out, a.Hostname)
		}
	}
	return out
}

// theIngressStatusShouldNotContainTheAddress: "Then The Ingress status
// should not contain the IP address or FQDN". The suite waits its full
// five-minute timeout; we wait for proof that meshgate has acted on a
// later Ingress instead: a canary Ingress of our class created after this
// one gets its status in a status pass that, by the informer's order,
// already knew this Ingress; a second canary's status proves that pass
// finished (passes run one after another). If meshgate took this Ingress
// for its own, that pass would have written its status too.
func (s *scenario) theIngressStatusShouldNotContainTheAddress() {
	s.t.Helper()
	for i := range 2 {
		c := hostIngress(s.namespace, fmt.Sprintf("canary-%d", i), fmt.Sprintf("canary-%d.meshgate.test", i), "/", "canary")
		if _, err := cluster.Clientset.NetworkingV1().Ingresses(s.namespace).Create(s.t.Context(), c, metav1.CreateOptions{}); err != nil {
			s.t.Fatal(err)
		}
		canary := &scenario{t: s.t, namespace: s.namespace, ingressName: c.Name}
		eventually(s.t, 2*time.Minute, "status of canary Ingress "+c.Name, func() bool { return len(canary.statusAddresses()) > 0 })
	}
	if addrs := s.statusAddresses(); len(addrs) > 0 {
		s.t.Fatalf("Ingress %s/%s of another class got status %v", s.namespace, s.ingressName, addrs)
	}
}

// send: `When I send a "method" request to "scheme://host/path"` (and the
// default-backend feature's http://"host"/"path" form).
func (s *scenario) send(method, scheme, host, path string) {
	s.t.Helper()
	var err error
	s.req, s.resp, err = capture(method, scheme, host, path, s.address)
	if err != nil {
		s.t.Fatalf("%s %s://%s/%s via %s: %v", method, scheme, host, strings.TrimPrefix(path, "/"), s.address, err)
	}
}

// capture is the suite's CaptureRoundTrip: one request to location (the
// Ingress address) with Host (and, for https, SNI) set to hostname, no
// compression, no certificate verification but the first DNS name of the
// server certificate recorded, a 10 s timeout; redirects are followed by
// hand to the same location; a JSON body is decoded as the echo server's
// report.
func capture(method, scheme, hostname, path, location string) (*capturedRequest, *capturedResponse, error) {
	var tlsHostname string
	tr := &http.Transport{
		DisableCompression: true,
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // the suite's own choice: self-signed certificates
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				c, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return fmt.Errorf("tls: failed to parse certificate from server: %w", err)
				}
				if len(c.DNSNames) > 0 {
					tlsHostname = c.DNSNames[0]
				}
				return nil
			},
		},
	}
	defer tr.CloseIdleConnections()
	if scheme == "https" && hostname != "" {
		tr.TLSClientConfig.ServerName = hostname
	}
	client := &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequest(method, fmt.Sprintf("%s://%s/%s", scheme, location, strings.TrimPrefix(path, "/")), nil)
	if err != nil {
		return nil, nil, err
	}
	if hostname != "" {
		req.Host = hostname
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		u, err := resp.Location()
		if err != nil {
			return nil, nil, err
		}
		return capture(method, u.Scheme, u.Hostname(), u.Path, location)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	cr := &capturedRequest{}
	var probe map[string]any
	if json.Unmarshal(body, &probe) == nil {
		if err := json.Unmarshal(body, cr); err != nil {
			return nil, nil, fmt.Errorf("unexpected error reading response: %w", err)
		}
	}
	return cr, &capturedResponse{StatusCode: resp.StatusCode, Proto: resp.Proto, Headers: resp.Header, TLSHostname: tlsHostname}, nil
}

// The suite's assertions (state.Scenario.Assert*), one per step of the
// feature files, each with the suite's own message.

func (s *scenario) statusCodeMustBe(code int) {
	s.t.Helper()
	mustBe(s.t, "the status code", s.resp.StatusCode, code)
}

func (s *scenario) servedByService(service string) {
	s.t.Helper()
	mustBe(s.t, "the serving service", s.req.Service, service)
}

func (s *scenario) requestHostMustBe(host string) {
	s.t.Helper()
	mustBe(s.t, "the request host", s.req.Host, host)
}

func (s *scenario) secureConnectionMustVerify(host string) {
	s.t.Helper()
	mustBe(s.t, "the response TLS hostname", s.resp.TLSHostname, host)
}

func (s *scenario) responseProtoMustBe(proto string) {
	s.t.Helper()
	mustBe(s.t, "the response protocol", s.resp.Proto, proto)
}

func (s *scenario) requestProtoMustBe(proto string) {
	s.t.Helper()
	mustBe(s.t, "the request protocol", s.req.Proto, proto)
}

func (s *scenario) requestMethodMustBe(method string) {
	s.t.Helper()
	mustBe(s.t, "the request method", s.req.Method, method)
}

func (s *scenario) requestPathMustBe(path string) {
	s.t.Helper()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	mustBe(s.t, "the request path", s.req.Path, path)
}

// mustBe fails the scenario when got is not want.
func mustBe[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("expected %s to be %v but it was %v", what, want, got)
	}
}

// headersMustContain checks a <key> | <value> table; "*" matches any
// value.
func headersMustContain(t *testing.T, what string, h map[string][]string, table [][2]string) {
	t.Helper()
	for _, kv := range table {
		vals := h[kv[0]]
		if vals == nil {
			t.Fatalf("expected %s headers to contain %v but it only contained %v", what, kv[0], h)
		}
		if kv[1] != "*" && !contains(vals, kv[1]) {
			t.Fatalf("expected %s headers %v to contain a %v value but it contained %v", what, kv[0], kv[1], vals)
		}
	}
}

func contains(vals []string, v string) bool {
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

// eventually polls cond (testkit.Poll) until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := testkit.Until(timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v\n%s\n--- meshgate:\n%s", what, err, cluster.Diagnose(), gate.Proc.Tail(3000))
	}
}
