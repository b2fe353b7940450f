package standalone

import (
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
)

const gatewayManifest = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: meshgate}
spec: {controllerName: meshgate.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: meshgate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: http, port: 80, targetPort: 9000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: http, port: 9000}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  parentRefs: [{name: gw}]
  hostnames: [gw.test]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: echo, port: 80}]
  - backendRefs: [{name: missing, port: 80}]
`

// TestGatewayManifests serves Gateway API objects read from manifests,
// the way Ingresses are: a route with an unresolved backend is published
// (it answers 500) and reported, the valid rule next to it serves.
func TestGatewayManifests(t *testing.T) {
	h := start(t, gatewayManifest, -1)
	r := h.next()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	vh := h.holder.Load().HTTP.Hosts["gw.test"]
	if vh == nil || len(vh.Routes) != 2 {
		t.Fatalf("gw.test = %+v", vh)
	}
	canary := vh.Routes[0]
	if len(canary.Headers) != 1 || canary.Scope != routing.ScopePlain || canary.Backends[0].Backend == nil ||
		canary.Backends[0].Backend.Endpoints[0] != "127.0.0.1:9000" {
		t.Errorf("canary route = %+v", canary)
	}
	if vh.Routes[1].Backends[0].Backend != nil {
		t.Errorf("route to a missing Service has a backend: %+v", vh.Routes[1].Backends[0])
	}
	var found bool
	for _, p := range r.Problems {
		found = found || (p.Kind == "HTTPRoute" && strings.Contains(p.Message, "missing"))
	}
	if !found {
		t.Errorf("no problem reported for the missing Service: %v", r.Problems)
	}
}
