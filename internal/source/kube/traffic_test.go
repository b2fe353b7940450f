package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/replica"
	"github.com/meshgate/meshgate/internal/routing"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// startDataPlane runs a replica serving the holder's tables on 127.0.0.1
// (HTTP and HTTPS), as `meshgate run` does.
func startDataPlane(t *testing.T, h *routing.Holder) *replica.Replica {
	t.Helper()
	r, err := replica.New(replica.Config{Tables: h, NodeName: "traffic-test",
		HTTPSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	runReplica(t, r)
	return r
}

// get sends GET / with Host host to addr through c and returns
// "status body", or the error text.
func get(c *http.Client, scheme string, addr net.Addr, host string) string {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s://%s/", scheme, addr), nil)
	if err != nil {
		return err.Error()
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// TestTrafficThroughDataPlane drives requests through a running data plane
// to backends in a network namespace, published by EndpointSlice, and
// follows an endpoint move and a certificate added later.
func TestTrafficThroughDataPlane(t *testing.T) {
	ns := newNamespace(t)
	bo := testBuild(t)
	mustCreate(t, ingressClass(bo.IngressClass, bo.ControllerName, false))
	netns := newBackendNetns(t)
	b1 := netns.prefix + "2"
	b2 := netns.addAddr(t, "3")
	netns.serveBackend(t, b1+":8080")
	netns.serveBackend(t, b2+":8080")

	h := &routing.Holder{}
	startController(t, Options{Holder: h, Build: bo, Namespace: ns})
	dp := startDataPlane(t, h)
	plain := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	es := slice(ns, "app-1", "app", "http", 8080, b1)
	mustCreate(t, service(ns, "app", 80), es, ingress(ns, "app", "app.example.com", "app", &bo.IngressClass))
	want1 := "200 backend " + b1 + ":8080"
	var last string
	eventually(t, 15*time.Second, "HTTP through the data plane to backend 1", func() bool {
		last = get(plain, "http", dp.HTTPAddr(), "app.example.com")
		return last == want1
	})

	// Move the endpoint: traffic follows.
	if err := testClient.Get(context.Background(), keyOf(es), es); err != nil {
		t.Fatal(err)
	}
	es.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{b2}}}
	if err := testClient.Update(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	want2 := "200 backend " + b2 + ":8080"
	eventually(t, 15*time.Second, "traffic moved to backend 2", func() bool {
		last = get(plain, "http", dp.HTTPAddr(), "app.example.com")
		return last == want2
	})

	// TLS: add a certificate to the Ingress; HTTPS with SNI then works.
	sec := tlsSecret(t, ns, "app-tls", "app.example.com")
	mustCreate(t, sec)
	var ing networkingv1.Ingress
	if err := testClient.Get(context.Background(), keyOf(ingress(ns, "app", "", "", nil)), &ing); err != nil {
		t.Fatal(err)
	}
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"app.example.com"}, SecretName: "app-tls"}}
	if err := testClient.Update(context.Background(), &ing); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sec.Data[corev1.TLSCertKey])
	secure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.example.com"}}}
	t.Cleanup(secure.CloseIdleConnections)
	eventually(t, 15*time.Second, "HTTPS with the Ingress certificate", func() bool {
		last = get(secure, "https", dp.HTTPSAddr(), "app.example.com")
		return last == want2
	})
	if got := get(plain, "http", dp.HTTPAddr(), "app.example.com"); !strings.HasPrefix(got, "308") && !strings.HasPrefix(got, "301") {
		t.Errorf("plain HTTP to a TLS host: %q, want a redirect", got)
	}
}
