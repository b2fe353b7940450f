package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestHandlerEcho(t *testing.T) {
	h := newHandler(BackendInfo{Name: "b1", Addr: "127.0.0.1:1"})
	tests := []struct {
		name, method, target, host string
		header                     map[string]string
		want                       Reply
	}{
		{
			name: "get root", method: "GET", target: "/", host: "echo.meshgate.test",
			want: Reply{Method: "GET", Path: "/", Host: "echo.meshgate.test"},
		},
		{
			name: "post with query and forwarded header", method: "POST", target: "/a/b?x=1", host: "h",
			header: map[string]string{"X-Forwarded-For": "127.0.0.55"},
			want:   Reply{Method: "POST", Path: "/a/b", Query: "x=1", Host: "h"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.target, nil)
			req.Host = tc.host
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content-type %q", ct)
			}
			var got Reply
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.Method != tc.want.Method || got.Path != tc.want.Path || got.Query != tc.want.Query || got.Host != tc.want.Host {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got.Backend.Name != "b1" || got.Backend.Addr != "127.0.0.1:1" {
				t.Fatalf("backend %+v", got.Backend)
			}
			for k, v := range tc.header {
				if g := got.Headers[k]; len(g) != 1 || g[0] != v {
					t.Fatalf("header %s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

func TestHandlerHealthz(t *testing.T) {
	rec := httptest.NewRecorder()
	newHandler(BackendInfo{}).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
}

// startHTTP serves h with the real server configuration on a loopback port.
func startHTTP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(newHandler(BackendInfo{Name: "t", Addr: ln.Addr().String()}))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestServerH2CAndHTTP1(t *testing.T) {
	addr := startHTTP(t)
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	var h1 http.Protocols
	h1.SetHTTP1(true)
	for _, tc := range []struct {
		name   string
		protos *http.Protocols
		want   string
	}{
		{"http1", &h1, "HTTP/1.1"},
		{"h2c prior knowledge", &h2, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{Protocols: tc.protos}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/p")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r Reply
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatal(err)
			}
			if r.Proto != tc.want || r.Path != "/p" {
				t.Fatalf("got proto %q path %q", r.Proto, r.Path)
			}
		})
	}
}

func TestWebSocketEcho(t *testing.T) {
	addr := startHTTP(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := runWSClient(ctx, []string{"--url", "ws://" + addr + "/ws", "--message", "ping"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ping\n" {
		t.Fatalf("got %q", out.String())
	}
	// Binary messages come back as binary.
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	typ, b, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageBinary || !bytes.Equal(b, []byte{0, 1, 2}) {
		t.Fatalf("got %v %v %v", typ, b, err)
	}
}

func TestWSClientRejectsBadCA(t *testing.T) {
	srv := httptest.NewTLSServer(newHandler(BackendInfo{}))
	defer srv.Close()
	err := runWSClient(context.Background(), []string{"--url", "wss://" + srv.Listener.Addr().String() + "/ws", "--timeout", "3s"}, io.Discard)
	if err == nil {
		t.Fatal("want a certificate error with system roots")
	}
	var ce *tls.CertificateVerificationError
	if !errors.As(err, &ce) {
		t.Fatalf("want a certificate verification error, got %v", err)
	}
}

func TestL4Echo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpDone := make(chan error, 1)
	go func() { udpDone <- serveUDP(ctx, pc) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpDone := make(chan error, 1)
	go func() { tcpDone <- serveTCP(ctx, ln) }()

	var out bytes.Buffer
	if err := runUDPClient(ctx, []string{"--addr", pc.LocalAddr().String(), "--message", "dgram"}, &out); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("stream")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "stream" {
		t.Fatalf("tcp echo %q %v", buf, err)
	}
	_ = c.Close()
	cancel()
	for _, ch := range []chan error{udpDone, tcpDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("echo server did not stop")
		}
	}
}

func TestParseServerFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"defaults", nil, false},
		{"udp only", []string{"--listen", "", "--udp", "127.0.0.1:9053"}, false},
		{"nothing", []string{"--listen", ""}, true},
		{"stray arg", []string{"x"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServerFlags(tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// set-session issues a cookie once per session: a request carrying a value
// this backend issued gets none, one carrying another's value a new one.
func TestHandlerSession(t *testing.T) {
	h := newHandler(BackendInfo{Name: "b1", Addr: "127.0.0.1:1"})
	get := func(cookie string) string {
		req := httptest.NewRequest("GET", "/x?set-session=JSESSIONID", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Header().Get("Set-Cookie")
	}
	sc := get("")
	if len(sc) < len("JSESSIONID=")+32 {
		t.Fatalf("Set-Cookie %q", sc)
	}
	pair, _, _ := bytes.Cut([]byte(sc), []byte(";"))
	if again := get(string(pair)); again != "" {
		t.Fatalf("an issued session got a new cookie %q", again)
	}
	if other := get("JSESSIONID=not-ours"); other == "" || other == sc {
		t.Fatalf("an unknown session got %q", other)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Header().Get("Set-Cookie") != "" {
		t.Fatal("a cookie without set-session")
	}
}
