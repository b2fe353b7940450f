package ingressconformance

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Each Test below is one features/*.feature file of
// ingress-controller-conformance; each subtest one Scenario (or Scenario
// Outline example), running the Background first in a fresh namespace as
// godog does. Step texts are quoted in comments.

// Feature: Default backend (features/default_backend.feature).
func TestDefaultBackend(t *testing.T) {
	background := func(t *testing.T) *scenario {
		s := newScenario(t)
		s.aNewRandomNamespace() // Given a new random namespace
		// Given an Ingress resource named "default-backend" with this spec:
		s.anIngressNamedWithSpec("default-backend", `
defaultBackend:
  service:
    name: echo-service
    port:
      number: 8080
`)
		s.theIngressStatusShowsTheAddress() // Then The Ingress status shows the IP address or FQDN where it is exposed
		return s
	}
	// Scenario Outline: An Ingress with no rules should send all requests
	// to the default backend
	for _, ex := range []struct{ method, host, path string }{
		{"GET", "my-host", ""},
		{"GET", "my-host", "sub-path"},
		{"POST", "some-host", ""},
		{"PUT", "", "resource"},
		{"DELETE", "some-host", "resource"},
		{"PATCH", "my-host", "resource"},
	} {
		t.Run(fmt.Sprintf("%s %q %q", ex.method, ex.host, ex.path), func(t *testing.T) {
			s := background(t)
			s.send(ex.method, "http", ex.host, ex.path) // When I send a "<method>" request to http://"<host>"/"<path>"
			s.statusCodeMustBe(200)                     // Then the response status-code must be 200
			s.servedByService("echo-service")           // And the response must be served by the "echo-service" service
			s.responseProtoMustBe("HTTP/1.1")           // And the response proto must be "HTTP/1.1"
			// And the response headers must contain <key> with matching <value>
			headersMustContain(t, "response", s.resp.Headers, [][2]string{
				{"Content-Length", "*"}, {"Content-Type", "*"}, {"Date", "*"}, {"Server", "*"},
			})
			s.requestMethodMustBe(ex.method) // And the request method must be "<method>"
			s.requestPathMustBe(ex.path)     // And the request path must be "<path>"
			s.requestProtoMustBe("HTTP/1.1") // And the request proto must be "HTTP/1.1"
			// And the request headers must contain <key> with matching <value>
			headersMustContain(t, "request", s.req.Headers, [][2]string{{"User-Agent", "Go-http-client/1.1"}})
		})
	}
}

const hostRulesIngress = `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: host-rules
spec:
  tls:
    - hosts:
        - foo.bar.com
      secretName: conformance-tls
  rules:
    - host: "*.foo.com"
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: wildcard-foo-com
                port:
                  number: 8080

    - host: foo.bar.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: foo-bar-com
                port:
                  name: http
`

// Feature: Host rules (features/host_rules.feature).
func TestHostRules(t *testing.T) {
	background := func(t *testing.T) *scenario {
		s := newScenario(t)
		s.aNewRandomNamespace()                                  // Given a new random namespace
		s.aSelfSignedTLSSecret("conformance-tls", "foo.bar.com") // Given a self-signed TLS secret named "conformance-tls" for the "foo.bar.com" hostname
		s.anIngressResource(hostRulesIngress)                    // Given an Ingress resource
		s.theIngressStatusShowsTheAddress()                      // Then The Ingress status shows the IP address or FQDN where it is exposed
		return s
	}
	t.Run("An Ingress with a host rule should send TLS traffic to the matching backend service", func(t *testing.T) {
		s := background(t)
		s.send("GET", "https", "foo.bar.com", "")   // When I send a "GET" request to "https://foo.bar.com"
		s.secureConnectionMustVerify("foo.bar.com") // Then the secure connection must verify the "foo.bar.com" hostname
		s.statusCodeMustBe(200)                     // And the response status-code must be 200
		s.servedByService("foo-bar-com")            // And the response must be served by the "foo-bar-com" service
		s.requestHostMustBe("foo.bar.com")          // And the request host must be "foo.bar.com"
	})
	t.Run("An Ingress with a host rule should send traffic to the matching backend service", func(t *testing.T) {
		s := background(t)
		s.send("GET", "http", "foo.bar.com", "") // When I send a "GET" request to "http://foo.bar.com"
		s.statusCodeMustBe(200)                  // And the response status-code must be 200
		s.servedByService("foo-bar-com")         // And the response must be served by the "foo-bar-com" service
		s.requestHostMustBe("foo.bar.com")       // And the request host must be "foo.bar.com"
	})
	for _, sc := range []struct{ name, host string }{
		{"An Ingress with a host rule should not route traffic when hostname does not match", "subdomain.bar.com"},
		{"An Ingress with a wildcard host rule should not route traffic matching on more than a single dns label", "baz.bar.foo.com"},
		{"An Ingress with a wildcard host rule should not route traffic matching no dns label", "foo.com"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			s := background(t)
			s.send("GET", "http", sc.host, "") // When I send a "GET" request to "http://<host>"
			s.statusCodeMustBe(404)            // Then the response status-code must be 404
		})
	}
	t.Run("An Ingress with a wildcard host rule should send traffic to the matching backend service", func(t *testing.T) {
		s := background(t)
		s.send("GET", "http", "bar.foo.com", "") // When I send a "GET" request to "http://bar.foo.com"
		s.statusCodeMustBe(200)                  // Then the response status-code must be 200
		s.servedByService("wildcard-foo-com")    // And the response must be served by the "wildcard-foo-com" service
		s.requestHostMustBe("bar.foo.com")       // And the request host must be "bar.foo.com"
	})
}

// Feature: Ingress class (features/ingress_class.feature).
func TestIngressClass(t *testing.T) {
	t.Run("An Ingress with an invalid ingress class should not send traffic to the matching backend service", func(t *testing.T) {
		s := newScenario(t)
		// Given an Ingress resource in a new random namespace
		s.aNewRandomNamespace()
		s.anIngressResource(`
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: test-ingress-class
spec:
  ingressClassName: some-invalid-class-name
  rules:
    - host: "ingress-class"
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: ingress-class-prefix
                port:
                  number: 8080
`)
		s.theIngressStatusShouldNotContainTheAddress() // Then The Ingress status should not contain the IP address or FQDN
		// The feature's title says no traffic is sent: meshgate's address
		// does not route the host.
		s.address = ingressIP
		s.send("GET", "http", "ingress-class", "")
		s.statusCodeMustBe(404)
	})
}

// Feature: Load Balancing (features/load_balancing.feature).
func TestLoadBalancing(t *testing.T) {
	t.Run("An Ingress with no rules should send all requests to the default backend", func(t *testing.T) {
		s := newScenario(t)
		s.aNewRandomNamespace() // Given a new random namespace
		// Given an Ingress resource named "load-balancing" with this spec:
		s.anIngressNamedWithSpec("load-balancing", `
defaultBackend:
  service:
    name: echo-service
    port:
      number: 8080
`)
		s.theIngressStatusShowsTheAddress() // Then The Ingress status shows the IP address or FQDN where it is exposed
		// Then The backend deployment "echo-service" for the ingress resource is scaled to 10
		s.scaleBackend("echo-service", 10)
		// When I send 100 requests to "http://load-balancing"
		pods := map[int]map[string]bool{}
		for range 100 {
			s.send("GET", "http", "load-balancing", "")
			if pods[s.resp.StatusCode] == nil {
				pods[s.resp.StatusCode] = map[string]bool{}
			}
			pods[s.resp.StatusCode][s.req.Pod] = true
		}
		// Then all the responses status-code must be 200 and the response
		// body should contain the IP address of 10 different Kubernetes pods.
		// (The suite checks that 200s came from 10 pods.) meshgate balances
		// round robin, so 100 requests reach each of 10 endpoints 10 times;
		// with random choice the chance of missing one would be
		// 10 × 0.9^100 ≈ 3e-4.
		if len(pods) != 1 || len(pods[http.StatusOK]) != 10 {
			t.Fatalf("status codes and pods seen: %v", pods)
		}
	})
}

// scaleBackend is the suite's ScaleIngressBackendDeployment: deployment
// "<ingress>-<name>" scaled to replicas, then its endpoints awaited (and
// the barrier, so that meshgate serves them all).
func (s *scenario) scaleBackend(name string, replicas int32) {
	s.t.Helper()
	deps := cluster.Clientset.AppsV1().Deployments(s.namespace)
	dep := s.ingressName + "-" + name
	sc, err := deps.GetScale(s.t.Context(), dep, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	sc.Spec.Replicas = replicas
	if _, err := deps.UpdateScale(s.t.Context(), dep, sc, metav1.UpdateOptions{}); err != nil {
		s.t.Fatal(err)
	}
	eventually(s.t, 2*time.Minute, fmt.Sprintf("deployment %s available with %d replicas", dep, replicas), func() bool {
		d, err := deps.Get(s.t.Context(), dep, metav1.GetOptions{})
		return err == nil && available(d, replicas)
	})
	waitReadyEndpoints(s.t, s.namespace, name, int(replicas))
	settle.wait(s.t)
}

func available(d *appsv1.Deployment, n int32) bool {
	return d.Status.ObservedGeneration >= d.Generation && d.Status.ReadyReplicas == n && d.Status.UpdatedReplicas == n
}
