package security

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// edge is one replica (no mesh) with default flags, serving harness.Host,
// reached directly from 127.0.0.1: the position of a client behind a
// service-mesh sidecar (whose inbound traffic comes from 127.0.0.6) or
// `kubectl port-forward`.
type edge struct {
	pki     *harness.PKI
	replica *harness.Replica
	man     string // the manifest directory (standalone mode reloads it on change)
}

// dial opens a TCP connection to the replica's HTTPS port, with a 5 s
// deadline; the caller closes it.
func (e *edge) dial(ctx context.Context, t *testing.T) net.Conn {
	t.Helper()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", e.replica.HTTPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	return raw
}

func setupEdge(t *testing.T, extra ...string) *edge {
	t.Helper()
	return setupEdgeManifests(t, "", extra...)
}

// setupEdgeManifests is setupEdge with more manifests (extraYAML: YAML
// documents, TLSPolicies for instance) served next to the Ingress.
func setupEdgeManifests(t *testing.T, extraYAML string, extra ...string) *edge {
	t.Helper()
	env := harness.NewEnv(t, harness.EnvOptions{Replicas: 1, Direct: true, NoMesh: true,
		ExtraArgs: extra, ExtraYAML: extraYAML})
	return &edge{pki: env.PKI, replica: env.Cluster.Replicas[0], man: env.Manifest}
}

// echoReply is the part of test/echo's reply these tests read.
type echoReply struct {
	Headers map[string][]string `json:"headers"`
	client  string              // the address the request came from, as meshgate saw it
}

// get sends one HTTP/1.1 GET for harness.Host with the extra header lines
// over TLS to the replica, after writing prefix (a PROXY header, or
// nothing) on the TCP connection, and returns what the backend received.
func (e *edge) get(t *testing.T, prefix string, header ...string) (echoReply, error) {
	t.Helper()
	pool, err := e.pki.Pool()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw := e.dial(ctx, t)
	defer raw.Close()
	if _, err := io.WriteString(raw, prefix); err != nil {
		return echoReply{}, fmt.Errorf("write prefix: %w", err)
	}
	tc := tls.Client(raw, &tls.Config{ServerName: harness.Host, RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err := tc.HandshakeContext(ctx); err != nil {
		return echoReply{}, fmt.Errorf("handshake: %w", err)
	}
	req := "GET / HTTP/1.1\r\nHost: " + harness.Host + "\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(tc, req+"Connection: close\r\n\r\n"); err != nil {
		return echoReply{}, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return echoReply{}, fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return echoReply{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	r := echoReply{client: raw.LocalAddr().(*net.TCPAddr).IP.String()}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return echoReply{}, fmt.Errorf("decode echo reply: %w", err)
	}
	return r, nil
}

// TestProxyHeaderIgnoredWithoutProxyProtocol is finding 2: with
// --proxy-protocol off (the default), a client on loopback prepends
// "PROXY TCP4 6.6.6.6 ..." and must not choose its own address. Before
// the fix, loopback was a trusted PROXY source by default and the header
// was parsed even with the protocol off: the backend saw X-Real-Ip
// 6.6.6.6.
func TestProxyHeaderIgnoredWithoutProxyProtocol(t *testing.T) {
	e := setupEdge(t)
	if _, err := e.get(t, ""); err != nil {
		t.Fatalf("plain request: %v", err)
	}
	local := strings.Split(e.replica.HTTPSAddr, ":")[0]
	r, err := e.get(t, fmt.Sprintf("PROXY TCP4 6.6.6.6 %s 4242 %s\r\n", local, harness.Port(e.replica.HTTPSAddr)))
	if err == nil {
		t.Fatalf("a PROXY header was parsed with --proxy-protocol off: backend saw X-Real-Ip %v, X-Forwarded-For %v",
			r.Headers["X-Real-Ip"], r.Headers["X-Forwarded-For"])
	}
	t.Logf("PROXY header without --proxy-protocol refused as not TLS: %v", err)
}

// TestClientForwardingHeadersNotTrusted: a client that is not a trusted
// forwarder cannot plant X-Forwarded-For or X-Real-Ip, nor smuggle them
// past the proxy spelled with underscores (CGI/WSGI stacks read X_Real_IP
// as X-Real-IP).
func TestClientForwardingHeadersNotTrusted(t *testing.T) {
	e := setupEdge(t)
	r, err := e.get(t, "", "X-Forwarded-For: 6.6.6.6", "X-Real-Ip: 6.6.6.6", "X_Real_IP: 6.6.6.6", "X_Forwarded_For: 6.6.6.6", "Accept: */*")
	if err != nil {
		t.Fatal(err)
	}
	client := r.client
	if got := r.Headers["X-Forwarded-For"]; len(got) != 1 || got[0] != client {
		t.Errorf("X-Forwarded-For = %q, want only the client address %q", got, client)
	}
	if got := r.Headers["X-Real-Ip"]; len(got) != 1 || got[0] != client {
		t.Errorf("X-Real-Ip = %q, want %q", got, client)
	}
	for k, v := range r.Headers {
		if strings.Contains(k, "_") {
			t.Errorf("header with an underscore reached the backend: %s: %q", k, v)
		}
	}
	if got := r.Headers["Accept"]; len(got) != 1 || got[0] != "*/*" {
		t.Errorf("ordinary header lost: Accept = %q", got)
	}
}
