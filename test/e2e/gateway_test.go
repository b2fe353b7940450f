package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// gatewayHTTPS is our GatewayClass and a Gateway "web" with one HTTPS
// listener "https" for host %[1]s with the echo-tls certificate.
const gatewayHTTPS = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: meshgate}
spec: {controllerName: meshgate.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: meshgate
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: %[1]q
    tls: {certificateRefs: [{name: echo-tls}]}
`

// gatewayManifest serves harness.Host through a Gateway API HTTPS listener
// (no Ingress at all): GatewayClass, Gateway, HTTPRoute, and the echo
// Service. %[1]s host, %[2]s echo IP, %[3]s echo port.
const gatewayManifest = gatewayHTTPS + `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: web, sectionName: https}]
  rules: [{backendRefs: [{name: echo, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: %[3]s}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: default
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: http, port: %[3]s}]
endpoints: [{addresses: [%[2]q], conditions: {ready: true}}]
`

// TestGatewayRoundRobinResumption is TestGoClientRoundRobinResumption for
// a Gateway: three replicas serve harness.Host only through a Gateway API
// HTTPS listener, and a client reconnecting through HAProxy's round robin
// with zero think time and one cached session resumes on every replica.
// The bound is checkResumed's, as for Ingress hosts.
func TestGatewayRoundRobinResumption(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	echoHost, echoPort, err := net.SplitHostPort(env.Echo.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mdir := gatewayManifests(t, dir, fmt.Appendf(nil, gatewayManifest, harness.Host, echoHost, echoPort))
	// The listener says port 443: the port clients reach the replicas on
	// through the balancer, as a Service port would be.
	cluster, lb := balancedCluster(t, dir, mdir, "haproxy-gateway", "127.0.0.61", "--gateway-https-port=443")
	for _, tc := range []struct {
		name    string
		version uint16
	}{{"TLSv1.2", tls.VersionTLS12}, {"TLSv1.3", tls.VersionTLS13}} {
		t.Run(tc.name, func(t *testing.T) {
			misses := missesByReason(t, cluster.Replicas)
			st := reconnect(t, ctx, tc.version, lb.Addr)
			t.Logf("%s round robin over 3 replicas through a Gateway HTTPS listener: %v", tc.name, st)
			if st.Errors > 0 {
				t.Fatalf("connection errors: %v", st.FirstErr)
			}
			checkResumed(t, "Gateway HTTPS listener", st.Resumed, st.Conns, cluster.Replicas, misses)
		})
	}
}
