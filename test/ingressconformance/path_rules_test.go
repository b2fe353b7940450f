package ingressconformance

import "testing"

const pathRulesIngress = `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: path-rules
spec:
  rules:
    - host: "exact-path-rules"
      http:
        paths:
          - path: /foo
            pathType: Exact
            backend:
              service:
                name: foo-exact
                port:
                  number: 8080

    - host: "prefix-path-rules"
      http:
        paths:
          - path: /foo
            pathType: Prefix
            backend:
              service:
                name: foo-prefix
                port:
                  number: 8080

          - path: /aaa/bbb
            pathType: Prefix
            backend:
              service:
                name: aaa-slash-bbb-prefix
                port:
                  number: 8080

          - path: /aaa
            pathType: Prefix
            backend:
              service:
                name: aaa-prefix
                port:
                  number: 8080

    - host: "mixed-path-rules"
      http:
        paths:
          - path: /foo
            pathType: Prefix
            backend:
              service:
                name: foo-prefix
                port:
                  number: 8080

          - path: /foo
            pathType: Exact
            backend:
              service:
                name: foo-exact
                port:
                  number: 8080

    - host: "trailing-slash-path-rules"
      http:
        paths:
          - path: /aaa/bbb/
            pathType: Prefix
            backend:
              service:
                name: aaa-slash-bbb-slash-prefix
                port:
                  number: 8080

          - path: /foo/
            pathType: Exact
            backend:
              service:
                name: foo-slash-exact
                port:
                  number: 8080
`

// Feature: Path rules (features/path_rules.feature). Every scenario is one
// request: `When I send a "GET" request to "http://<host><path>"`, then
// `the response status-code must be <code>` and, for 200s, `the response
// must be served by the "<service>" service` and `the request path must be
// "<path>"`. (The prefix /foo → /foo/ scenario appears twice in the
// feature; both are run.)
func TestPathRules(t *testing.T) {
	for _, sc := range []struct {
		name, host, path string
		code             int
		service          string
	}{
		{"An Ingress with exact path rules should send traffic to the matching backend service", "exact-path-rules", "/foo", 200, "foo-exact"},
		{"An Ingress with exact path rules should not match requests with trailing slash", "exact-path-rules", "/foo/", 404, ""},
		{"An Ingress with exact path rules should be case sensitive", "exact-path-rules", "/FOO", 404, ""},
		{"An Ingress with exact path rules should not match any other label", "exact-path-rules", "/bar", 404, ""},
		{"An Ingress with prefix path rules should send traffic to the matching backend service", "prefix-path-rules", "/foo", 200, "foo-prefix"},
		{"An Ingress with prefix path rules should ignore the request trailing slash and send traffic to the matching backend service", "prefix-path-rules", "/foo/", 200, "foo-prefix"},
		{"An Ingress with prefix path rules should be case sensitive", "prefix-path-rules", "/FOO", 404, ""},
		{"An Ingress with prefix path rules should match multiple labels, match the longest path, and send traffic to the matching backend service", "prefix-path-rules", "/aaa/bbb", 200, "aaa-slash-bbb-prefix"},
		{"An Ingress with prefix path rules should match multiple labels, match the longest path, and subpaths and send traffic to the matching backend service", "prefix-path-rules", "/aaa/bbb/ccc", 200, "aaa-slash-bbb-prefix"},
		{"An Ingress with prefix path rules should and send traffic to the matching backend service", "prefix-path-rules", "/aaa/ccc", 200, "aaa-prefix"},
		{"An Ingress with prefix path rules should match each labels string prefix", "prefix-path-rules", "/aaaccc", 404, ""},
		{"An Ingress with prefix path rules should ignore the request trailing slash and send traffic to the matching backend service (again)", "prefix-path-rules", "/foo/", 200, "foo-prefix"},
		{"An Ingress with mixed path rules should send traffic to the matching backend service where Exact is preferred", "mixed-path-rules", "/foo", 200, "foo-exact"},
		{"An Ingress with a trailing slashes in a prefix path rule should ignore the trailing slash and send traffic to the matching backend service", "trailing-slash-path-rules", "/aaa/bbb", 200, "aaa-slash-bbb-slash-prefix"},
		{"An Ingress with a trailing slashes in a prefix path rule should ignore the trailing slash and send traffic to the matching backend service (slash)", "trailing-slash-path-rules", "/aaa/bbb/", 200, "aaa-slash-bbb-slash-prefix"},
		{"An Ingress with a trailing slashes in an exact path rule should not match requests without a trailing slash", "trailing-slash-path-rules", "/foo", 404, ""},
	} {
		t.Run(sc.name, func(t *testing.T) {
			s := newScenario(t)
			// Background: Given an Ingress resource in a new random namespace
			s.aNewRandomNamespace()
			s.anIngressResource(pathRulesIngress)
			s.theIngressStatusShowsTheAddress() // Then The Ingress status shows the IP address or FQDN where it is exposed
			s.send("GET", "http", sc.host, sc.path)
			s.statusCodeMustBe(sc.code)
			if sc.code == 200 {
				s.servedByService(sc.service)
				s.requestPathMustBe(sc.path)
			}
		})
	}
}
