package server

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestH2CPriorKnowledge: a client that starts a plain connection with the
// HTTP/2 preface (gRPC without TLS) is served HTTP/2; HTTP/1.1 on the same
// listener is unchanged.
func TestH2CPriorKnowledge(t *testing.T) {
	f := newFixture(t, nil)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	status, e, proto := get(t, &http.Client{Transport: tr}, "http://"+f.httpAddr()+"/plain")
	if status != 200 || e == nil || proto != "HTTP/2.0" || e.Hdr.Get("X-Forwarded-Proto") != "http" {
		t.Fatalf("h2c: %d %s %v", status, proto, e)
	}
	status, e, proto = get(t, http.DefaultClient, "http://"+f.httpAddr()+"/plain")
	if status != 200 || e == nil || proto != "HTTP/1.1" {
		t.Fatalf("HTTP/1.1: %d %s %v", status, proto, e)
	}
}

// TestH2CShortRequest: an HTTP/1.0 request shorter than the HTTP/2 preface
// is answered, not held waiting for the preface's length.
func TestH2CShortRequest(t *testing.T) {
	f := newFixture(t, nil)
	c, err := net.Dial("tcp", f.httpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // far below ReadHeaderTimeout's 10 s default
	req := "GET / HTTP/1.0\r\n\r\n"                    // 18 bytes, the preface has 24
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.") {
		t.Fatalf("status line %q, %v", line, err)
	}
}
