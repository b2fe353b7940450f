package security

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/meshgate/meshgate/test/harness"
)

// policyYAML is a TLSPolicy named name in namespace default selecting
// hosts, with spec lines appended (YAML, two-space indented under spec).
func policyYAML(name string, hosts []string, spec string) string {
	quoted := make([]string, len(hosts))
	for i, h := range hosts {
		quoted[i] = strconv.Quote(h)
	}
	return fmt.Sprintf("---\napiVersion: meshgate.io/v1alpha1\nkind: TLSPolicy\nmetadata: {name: %s, namespace: default}\nspec:\n  hosts: [%s]\n%s", name, strings.Join(quoted, ", "), spec)
}

// request opens a TLS connection to the edge with SNI sni and TLS
// version (0: any), sends one GET with the given Host over HTTP/1.1 or,
// when h2 is set, HTTP/2, and returns the status.
func (e *edge) request(t *testing.T, sni, host string, version uint16, h2 bool) int {
	t.Helper()
	pool, err := e.pki.Pool()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{ServerName: sni, RootCAs: pool, MinVersion: version, MaxVersion: version, NextProtos: []string{"http/1.1"}}
	if h2 {
		cfg.NextProtos = []string{"h2"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw := e.dial(ctx, t)
	defer raw.Close()
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake SNI %s TLS %x: %v", sni, version, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+sni+"/", nil)
	req.Host = host
	var resp *http.Response
	if h2 {
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Fatalf("ALPN chose %q, want h2", p)
		}
		cc, err := (&http2.Transport{}).NewClientConn(tc)
		if err != nil {
			t.Fatal(err)
		}
		resp, err = cc.RoundTrip(req)
		if err != nil {
			t.Fatalf("h2 request: %v", err)
		}
	} else {
		if err := req.Write(tc); err != nil {
			t.Fatal(err)
		}
		resp, err = http.ReadResponse(bufio.NewReader(tc), req)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestHostSNIMismatchMisdirected is finding 3 of issue 15: the certificate
// and TLS policy are chosen by SNI, the route by Host, so a connection for
// one host must not carry requests for a host under another TLS policy.
// OtherHost's policy requires TLS 1.3; a TLS 1.2 connection with SNI Host
// and "Host: OtherHost" (HTTP/1.1), or an HTTP/2 connection for Host
// coalescing a request for OtherHost, must get 421 Misdirected Request
// (RFC 9110 §15.5.20) and never reach OtherHost's backend. Before the fix
// both were answered 200 by the backend.
func TestHostSNIMismatchMisdirected(t *testing.T) {
	e := setupEdgeManifests(t, policyYAML("strict", []string{harness.OtherHost}, "  minVersion: \"1.3\"\n"))
	cases := []struct {
		name      string
		sni, host string
		version   uint16
		h2        bool
		want      int
	}{
		{"own host TLS1.2", harness.Host, harness.Host, tls.VersionTLS12, false, 200},
		{"strict host TLS1.3", harness.OtherHost, harness.OtherHost, tls.VersionTLS13, false, 200},
		{"strict host via TLS1.2 connection of another", harness.Host, harness.OtherHost, tls.VersionTLS12, false, 421},
		{"strict host via TLS1.3 connection of another", harness.Host, harness.OtherHost, tls.VersionTLS13, false, 421},
		{"strict host with port in Host", harness.Host, harness.OtherHost + ":443", tls.VersionTLS12, false, 421},
		{"h2 coalescing onto another policy", harness.Host, harness.OtherHost, tls.VersionTLS12, true, 421},
		{"h2 coalescing the other way", harness.OtherHost, harness.Host, tls.VersionTLS13, true, 421},
		{"h2 own host", harness.OtherHost, harness.OtherHost, tls.VersionTLS13, true, 200},
	}
	for _, tc := range cases {
		if got := e.request(t, tc.sni, tc.host, tc.version, tc.h2); got != tc.want {
			t.Errorf("%s: SNI %s, Host %s: status %d, want %d", tc.name, tc.sni, tc.host, got, tc.want)
		}
	}
}

// TestCoalescingSharedPolicy: hosts on one certificate under one TLS
// policy may share a connection (HTTP/2 connection reuse, RFC 9113
// §9.1.1, and HTTP/1.1 clients that send Host different from SNI), so the
// 421 of TestHostSNIMismatchMisdirected must not refuse them.
func TestCoalescingSharedPolicy(t *testing.T) {
	e := setupEdgeManifests(t, policyYAML("shared", []string{harness.Host, harness.OtherHost}, "  minVersion: \"1.2\"\n"))
	for _, h2 := range []bool{false, true} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			if got := e.request(t, harness.Host, harness.OtherHost, v, h2); got != 200 {
				t.Errorf("h2=%v TLS %x: SNI %s, Host %s: status %d, want 200", h2, v, harness.Host, harness.OtherHost, got)
			}
		}
	}
}
