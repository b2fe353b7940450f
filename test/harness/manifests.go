package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
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

// Write writes the manifests into dir (created) as echo.yaml and
// secret.yaml, and returns dir.
func (m Manifests) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("manifests: %w", err)
	}
	host, port, err := net.SplitHostPort(m.EchoAddr)
	if err != nil {
		return "", fmt.Errorf("manifests: echo addr: %w", err)
	}
	var b strings.Builder
	b.WriteString(ingressClassYAML)
	b.WriteString(ingressYAML("echo", "echo-tls", Host, OtherHost))
	fmt.Fprintf(&b, serviceTemplate, host, port)
	for i, th := range m.TLSHosts {
		b.WriteString(ingressYAML(fmt.Sprintf("echo-%d", i+1), th.SecretName, th.Host))
	}
	if m.UDPPort != 0 {
		uh, up, err := net.SplitHostPort(m.UDPBackend)
		if err != nil {
			return "", fmt.Errorf("manifests: udp backend: %w", err)
		}
		tcpEntry := ""
		if m.TCPPort != 0 {
			tcpEntry = fmt.Sprintf("\n  tcp.%d: default/echo-tcp:echo", m.TCPPort)
		}
		fmt.Fprintf(&b, l4Template, m.UDPPort, up, uh, up, tcpEntry)
		if m.TCPPort != 0 {
			th, tp, err := net.SplitHostPort(m.TCPBackend)
			if err != nil {
				return "", fmt.Errorf("manifests: tcp backend: %w", err)
			}
			fmt.Fprintf(&b, tcpTemplate, tp, th)
		}
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

const ingressClassYAML = `apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: meshgate
spec:
  controller: meshgate.io/ingress-controller
`

// ingressYAML renders an Ingress (class meshgate, namespace default) that
// serves hosts over TLS from Secret secret and routes / on each to the
// Service echo.
func ingressYAML(name, secret string, hosts ...string) string {
	var b strings.Builder
	quoted := make([]string, len(hosts))
	for i, h := range hosts {
		quoted[i] = fmt.Sprintf("%q", h)
	}
	fmt.Fprintf(&b, `---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: %s
  namespace: default
spec:
  ingressClassName: meshgate
  tls:
  - hosts: [%s]
    secretName: %s
  rules:
`, name, strings.Join(quoted, ", "), secret)
	for _, h := range quoted {
		fmt.Fprintf(&b, `  - host: %s
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: echo
            port:
              name: http
`, h)
	}
	return b.String()
}

// serviceTemplate: endpoint IP, endpoint port.
const serviceTemplate = `---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
spec:
  ports:
  - name: http
    port: 80
    targetPort: %[2]s
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: default
  labels:
    kubernetes.io/service-name: echo
addressType: IPv4
ports:
- name: http
  port: %[2]s
  protocol: TCP
endpoints:
- addresses: [%[1]q]
  conditions:
    ready: true
`

// l4Template: meshgate port, backend port, backend IP, backend port.
const l4Template = `---
apiVersion: v1
kind: ConfigMap
metadata:
  name: meshgate-l4
  namespace: default
data:
  udp.%[1]d: default/echo-udp:%[2]s%[5]s
---
apiVersion: v1
kind: Service
metadata:
  name: echo-udp
  namespace: default
spec:
  ports:
  - name: udp
    port: %[2]s
    targetPort: %[2]s
    protocol: UDP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-udp-1
  namespace: default
  labels:
    kubernetes.io/service-name: echo-udp
addressType: IPv4
ports:
- name: udp
  port: %[4]s
  protocol: UDP
endpoints:
- addresses: [%[3]q]
  conditions:
    ready: true
`

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
