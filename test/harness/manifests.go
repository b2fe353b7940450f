package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Manifests describes the standalone-mode objects a scenario serves: an
// Ingress (class meshgate) for Host and OtherHost with TLS from the echo-tls
// Secret (whose certificate must name both, see MakePKI),
// routing / to Service echo, whose EndpointSlice points at EchoAddr; and,
// when UDPPort is set, the meshgate-l4 ConfigMap forwarding that UDP port
// to UDPBackend.
type Manifests struct {
	EchoAddr   string // host:port of the echo backend's HTTP listener
	SecretYAML string // path of the Secret manifest (hack/certs.sh output)
	UDPPort    int    // meshgate UDP port ("udp.<port>" key); 0 = no ConfigMap
	UDPBackend string // host:port of the UDP echo
	TCPPort    int    // meshgate TCP port ("tcp.<port>" key, in the same ConfigMap); 0 = none
	TCPBackend string // host:port of the TCP echo
	// Extra is more YAML documents (TLSPolicies, say) written to extra.yaml
	// next to the others; "" writes none.
	Extra string
	// TLSHosts are more HTTPS hosts routed to the same Service echo, each
	// with its own certificate (an ECDSA one next to the RSA one, say).
	TLSHosts []TLSHost
}

// TLSHost is one more HTTPS host of Manifests: an Ingress echo-<n> for
// Host with TLS from the Secret SecretName, whose manifest (kubernetes.io/tls,
// namespace default; MakePKIWith's output) is at SecretYAML.
type TLSHost struct {
	Host, SecretName, SecretYAML string
}

// SamplesFile is the standalone sample that `make demo` serves, relative
// to the repository root; Write derives the scenario's objects from it so
// that the tests serve what the demo and the docs show.
const SamplesFile = "config/samples/standalone/echo.yaml"

// Write writes the manifests into dir (created) as echo.yaml and
// secret.yaml, and returns dir. The objects are SamplesFile's (IngressClass,
// Service and EndpointSlice echo, Ingress echo, and with UDPPort the
// meshgate-l4 ConfigMap and the udp-echo Service), pointed at EchoAddr and
// UDPBackend and serving Host and OtherHost; TCP and the TLSHosts' Ingresses
// are added to them.
func (m Manifests) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("manifests: %w", err)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("manifests: %w", err)
	}
	samples, err := os.ReadFile(filepath.Join(root, SamplesFile))
	if err != nil {
		return "", fmt.Errorf("manifests: %w", err)
	}
	objs, err := m.fromSamples(samples)
	if err != nil {
		return "", fmt.Errorf("manifests: %s: %w", SamplesFile, err)
	}
	var b strings.Builder
	for i, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			return "", fmt.Errorf("manifests: %w", err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	if m.TCPPort != 0 {
		th, tp, err := net.SplitHostPort(m.TCPBackend)
		if err != nil {
			return "", fmt.Errorf("manifests: tcp backend: %w", err)
		}
		fmt.Fprintf(&b, tcpTemplate, tp, th)
	}
	if err := os.WriteFile(filepath.Join(dir, "echo.yaml"), []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("manifests: %w", err)
	}
	if m.Extra != "" {
		if err := os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(m.Extra), 0o644); err != nil {
			return "", fmt.Errorf("manifests: %w", err)
		}
	}
	secret, err := os.ReadFile(m.SecretYAML)
	if err != nil {
		return "", fmt.Errorf("manifests: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.yaml"), secret, 0o600); err != nil {
		return "", fmt.Errorf("manifests: %w", err)
	}
	for i, th := range m.TLSHosts {
		secret, err := os.ReadFile(th.SecretYAML)
		if err != nil {
			return "", fmt.Errorf("manifests: %s: %w", th.Host, err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("secret-%d.yaml", i+1)), secret, 0o600); err != nil {
			return "", fmt.Errorf("manifests: %w", err)
		}
	}
	return dir, nil
}

// The sample's objects that Write changes, by kind and name.
const (
	sampleService     = "echo"
	sampleSlice       = "echo-1"
	sampleIngress     = "echo"
	sampleL4          = "meshgate-l4"
	sampleUDPService  = "udp-echo"
	sampleUDPSlice    = "udp-echo-1"
	sampleUDPPortName = "dns" // the udp-echo Service's port
)

// fromSamples decodes the sample's documents and rewrites them for m. It
// fails when an object it rewrites is missing, so that a change of the
// sample cannot silently leave the tests serving something else.
func (m Manifests) fromSamples(samples []byte) ([]*unstructured.Unstructured, error) {
	host, port, err := splitHostPortNum(m.EchoAddr)
	if err != nil {
		return nil, fmt.Errorf("echo addr: %w", err)
	}
	var objs []*unstructured.Unstructured
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(samples)))
	for {
		doc, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		var o map[string]any
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		if len(o) != 0 {
			objs = append(objs, &unstructured.Unstructured{Object: o})
		}
	}
	find := func(kind, name string) (*unstructured.Unstructured, error) {
		for _, o := range objs {
			if o.GetKind() == kind && o.GetName() == name {
				return o, nil
			}
		}
		return nil, fmt.Errorf("no %s %s", kind, name)
	}
	svc, err := find("Service", sampleService)
	if err != nil {
		return nil, err
	}
	slice, err := find("EndpointSlice", sampleSlice)
	if err != nil {
		return nil, err
	}
	if err := pointAt(svc, slice, host, port); err != nil {
		return nil, err
	}
	ing, err := find("Ingress", sampleIngress)
	if err != nil {
		return nil, err
	}
	if err := ingressFor(ing, "echo-tls", Host, OtherHost); err != nil {
		return nil, err
	}
	for i, th := range m.TLSHosts {
		more := ing.DeepCopy()
		more.SetName(fmt.Sprintf("%s-%d", sampleIngress, i+1))
		if err := ingressFor(more, th.SecretName, th.Host); err != nil {
			return nil, err
		}
		objs = append(objs, more)
	}

	l4, err := find("ConfigMap", sampleL4)
	if err != nil {
		return nil, err
	}
	udpSvc, err := find("Service", sampleUDPService)
	if err != nil {
		return nil, err
	}
	udpSlice, err := find("EndpointSlice", sampleUDPSlice)
	if err != nil {
		return nil, err
	}
	if m.UDPPort == 0 {
		// No L4 services: drop the ConfigMap and what only it uses.
		return slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool {
			return o == l4 || o == udpSvc || o == udpSlice
		}), nil
	}
	uh, up, err := splitHostPortNum(m.UDPBackend)
	if err != nil {
		return nil, fmt.Errorf("udp backend: %w", err)
	}
	if err := pointAt(udpSvc, udpSlice, uh, up); err != nil {
		return nil, err
	}
	svcPort, err := servicePort(udpSvc, sampleUDPPortName)
	if err != nil {
		return nil, err
	}
	data := map[string]any{
		fmt.Sprintf("udp.%d", m.UDPPort): fmt.Sprintf("default/%s:%d", sampleUDPService, svcPort),
	}
	if m.TCPPort != 0 {
		data[fmt.Sprintf("tcp.%d", m.TCPPort)] = "default/echo-tcp:echo"
	}
	if err := unstructured.SetNestedField(l4.Object, data, "data"); err != nil {
		return nil, err
	}
	return objs, nil
}

// pointAt makes Service svc's first port target port and its EndpointSlice
// slice hold the one ready endpoint host:port.
func pointAt(svc, slice *unstructured.Unstructured, host string, port int64) error {
	ports, _, err := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if err != nil || len(ports) == 0 {
		return fmt.Errorf("Service %s: no ports", svc.GetName())
	}
	ports[0].(map[string]any)["targetPort"] = port
	if err := unstructured.SetNestedSlice(svc.Object, ports, "spec", "ports"); err != nil {
		return err
	}
	sports, _, err := unstructured.NestedSlice(slice.Object, "ports")
	if err != nil || len(sports) == 0 {
		return fmt.Errorf("EndpointSlice %s: no ports", slice.GetName())
	}
	sports[0].(map[string]any)["port"] = port
	if err := unstructured.SetNestedSlice(slice.Object, sports, "ports"); err != nil {
		return err
	}
	eps := []any{map[string]any{"addresses": []any{host}, "conditions": map[string]any{"ready": true}}}
	return unstructured.SetNestedSlice(slice.Object, eps, "endpoints")
}

// servicePort is the port number of svc's port named name.
func servicePort(svc *unstructured.Unstructured, name string) (int64, error) {
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	for _, p := range ports {
		pm, _ := p.(map[string]any)
		if pm["name"] == name {
			n, ok, err := unstructured.NestedFieldNoCopy(pm, "port")
			if err != nil || !ok {
				break
			}
			switch v := n.(type) {
			case int64:
				return v, nil
			case float64:
				return int64(v), nil
			}
		}
	}
	return 0, fmt.Errorf("Service %s: no port %q", svc.GetName(), name)
}

// ingressFor makes Ingress ing serve hosts over TLS from Secret secret,
// each with the sample's first rule (its paths and backend).
func ingressFor(ing *unstructured.Unstructured, secret string, hosts ...string) error {
	rules, _, err := unstructured.NestedSlice(ing.Object, "spec", "rules")
	if err != nil || len(rules) == 0 {
		return fmt.Errorf("Ingress %s: no rules", ing.GetName())
	}
	rule := rules[0].(map[string]any)
	var hs, rs []any
	for _, h := range hosts {
		r := runtime.DeepCopyJSON(rule)
		r["host"] = h
		rs = append(rs, r)
		hs = append(hs, h)
	}
	if err := unstructured.SetNestedSlice(ing.Object, rs, "spec", "rules"); err != nil {
		return err
	}
	tls := []any{map[string]any{"hosts": hs, "secretName": secret}}
	return unstructured.SetNestedSlice(ing.Object, tls, "spec", "tls")
}

// splitHostPortNum splits host:port with a numeric port.
func splitHostPortNum(addr string) (string, int64, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("%s: port: %w", addr, err)
	}
	return h, n, nil
}

// tcpTemplate: backend port, backend IP. The ConfigMap names the Service
// port by name, as ingress-nginx users do.
const tcpTemplate = `---
apiVersion: v1
kind: Service
metadata:
  name: echo-tcp
  namespace: default
spec:
  ports:
  - name: echo
    port: %[1]s
    targetPort: %[1]s
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-tcp-1
  namespace: default
  labels:
    kubernetes.io/service-name: echo-tcp
addressType: IPv4
ports:
- name: echo
  port: %[1]s
  protocol: TCP
endpoints:
- addresses: [%[2]q]
  conditions:
    ready: true
`
