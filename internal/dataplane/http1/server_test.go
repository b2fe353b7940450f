package http1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/testkit"
)

// handlerFunc adapts a function to exchange.Handler.
type handlerFunc func(w exchange.ResponseWriter, r *exchange.Request)

func (f handlerFunc) ServeExchange(w exchange.ResponseWriter, r *exchange.Request) { f(w, r) }

// echoHandler answers "method target body" with Content-Length, after
// reading the body; /chunked answers with an unknown length and a trailer;
// /interim sends a 103 first.
func echoHandler(w exchange.ResponseWriter, r *exchange.Request) {
	var body []byte
	if r.Body != nil {
		if r.ExpectContinue {
			var h exchange.Header
			_ = w.WriteHeader(100, &h, -1)
		}
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			var h exchange.Header
			_ = w.WriteHeader(400, &h, 0)
			_ = w.Finish(nil)
			return
		}
	}
	msg := r.Method + " " + r.Target + " " + string(body)
	if t := bodyTrailer(r); t != "" {
		msg += " trailer=" + t
	}
	var h exchange.Header
	h.Add("X-Host", r.Host)
	switch r.Path {
	case "/chunked":
		_ = w.WriteHeader(200, &h, -1)
		_, _ = w.Write([]byte(msg))
		_ = w.Flush()
		_, _ = w.Write([]byte("!"))
		var tr exchange.Header
		tr.Add("X-Sum", "7")
		_ = w.Finish(&tr)
		return
	case "/interim":
		var eh exchange.Header
		eh.Add("Link", "</s.css>; rel=preload")
		_ = w.WriteHeader(103, &eh, -1)
	}
	_ = w.WriteHeader(200, &h, int64(len(msg)))
	_, _ = w.Write([]byte(msg))
	_ = w.Finish(nil)
}

func bodyTrailer(r *exchange.Request) string {
	if r.Body == nil {
		return ""
	}
	if t := r.Body.Trailer(); t != nil {
		return t.Value("X-T")
	}
	return ""
}

// startServer serves h on a loopback listener and returns its address.
func startServer(t *testing.T, cfg ServerConfig) (*Server, string) {
	t.Helper()
	if cfg.Handler == nil {
		cfg.Handler = handlerFunc(echoHandler)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Serve(ln) })
	t.Cleanup(func() {
		_ = ln.Close()
		s.Close()
		wg.Wait()
	})
	return s, ln.Addr().String()
}

// rawConn dials addr with a 10s deadline for the whole test.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// readResp reads one response (net/http's client parser: what clients see).
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

func TestServeKeepAlive(t *testing.T) {
	_, addr := startServer(t, ServerConfig{})
	c, br := rawConn(t, addr)
	// Two requests in one write (pipelined), then a third after the
	// answers: all on one connection, answered in order.
	send(t, c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz")
	if resp, body := readResp(t, br, "GET"); body != "GET /a " || resp.Header.Get("X-Host") != "h" || resp.Header.Get("Date") == "" {
		t.Fatalf("first: %q %v", body, resp.Header)
	}
	if _, body := readResp(t, br, "POST"); body != "POST /b xyz" {
		t.Fatalf("second: %q", body)
	}
	send(t, c, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: 9\r\n\r\n")
	if _, body := readResp(t, br, "POST"); body != "POST /c ab trailer=9" {
		t.Fatalf("chunked request: %q", body)
	}
	send(t, c, "HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := readResp(t, br, "HEAD"); body != "" || resp.ContentLength != int64(len("HEAD /d ")) {
		t.Fatalf("HEAD: %q length %d", body, resp.ContentLength)
	}
	send(t, c, "GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	resp, body := readResp(t, br, "GET")
	if body != "GET /chunked !" || resp.Trailer.Get("X-Sum") != "7" || !resp.Close {
		t.Fatalf("chunked response: %q trailer %v close %v", body, resp.Trailer, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection open after Connection: close (%v)", err)
	}
}

func TestServeHTTP10(t *testing.T) {
	_, addr := startServer(t, ServerConfig{})
	c, br := rawConn(t, addr)
	send(t, c, "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body := readResp(t, br, "GET")
	if body != "GET /k " || resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("keep-alive: %q %v", body, resp.Header)
	}
	// Unknown length to an HTTP/1.0 client: no chunking, the body ends
	// with the connection.
	send(t, c, "GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	raw, _ := io.ReadAll(br)
	if !strings.Contains(string(raw), "Connection: close") || strings.Contains(string(raw), "Transfer-Encoding") ||
		!strings.HasSuffix(string(raw), "GET /chunked !") {
		t.Fatalf("HTTP/1.0 unknown length:\n%s", raw)
	}
}

func TestServeInterimResponses(t *testing.T) {
	_, addr := startServer(t, ServerConfig{})
	c, br := rawConn(t, addr)
	send(t, c, "PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim %q %v", line, err)
	}
	if l, _ := br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("interim head not ended: %q", l)
	}
	send(t, c, "data")
	if _, body := readResp(t, br, "PUT"); body != "PUT /up data" {
		t.Fatalf("after 100: %q", body)
	}
	send(t, c, "GET /interim HTTP/1.1\r\nHost: h\r\n\r\n")
	raw := make([]byte, 0, 256)
	for !strings.Contains(string(raw), "GET /interim ") {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b)
	}
	if !strings.HasPrefix(string(raw), "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n") {
		t.Fatalf("103 then 200:\n%s", raw)
	}
}

// TestServeRefusals checks what the engine answers by itself: malformed
// requests 400 (and similar), oversized heads 431, a stalled head 408; each
// closes the connection.
func TestServeRefusals(t *testing.T) {
	_, addr := startServer(t, ServerConfig{MaxHeaderBytes: 1024, ReadHeaderTimeout: 300 * time.Millisecond})
	for _, tc := range []struct {
		name, in string
		status   int
	}{
		{"smuggling", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400},
		{"unsupported coding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"version", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505},
		{"too large", "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 2000) + "\r\n\r\n", 431},
		{"stalled head", "GET / HTTP/1.1\r\nHost: h\r\n", 408},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := rawConn(t, addr)
			send(t, c, tc.in)
			resp, _ := readResp(t, br, "GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("status %d close %v, want %d and close", resp.StatusCode, resp.Close, tc.status)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Fatal("connection still open after a refusal")
			}
		})
	}
}

func TestServeIdleTimeout(t *testing.T) {
	_, addr := startServer(t, ServerConfig{IdleTimeout: 200 * time.Millisecond})
	c, br := rawConn(t, addr)
	send(t, c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	readResp(t, br, "GET")
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
}

func TestServeUnreadBody(t *testing.T) {
	ignore := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		var h exchange.Header
		_ = w.WriteHeader(200, &h, 2)
		_, _ = w.Write([]byte("ok"))
		_ = w.Finish(nil)
	})
	_, addr := startServer(t, ServerConfig{Handler: ignore})
	c, br := rawConn(t, addr)
	// A small unread body is discarded and the connection kept.
	send(t, c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
	send(t, c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	for i := range 2 {
		if resp, body := readResp(t, br, "GET"); body != "ok" || resp.Close {
			t.Fatalf("response %d: %q close %v", i, body, resp.Close)
		}
	}
	// A client told to wait for 100 (Continue) that never got it has sent
	// nothing: the connection closes after the answer.
	send(t, c, "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	readResp(t, br, "POST")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection open after an unread expected body (%v)", err)
	}
}

func TestServeUpgrade(t *testing.T) {
	up := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		var h exchange.Header
		h.Add("Upgrade", r.Upgrade)
		st, err := w.(exchange.Upgrader).Upgrade(&h)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(st) // until the client half-closes
		_, _ = st.Write([]byte("echo:" + string(b)))
		_ = st.CloseWrite()
	})
	_, addr := startServer(t, ServerConfig{Handler: up})
	c, br := rawConn(t, addr)
	// Bytes right after the head belong to the new protocol.
	send(t, c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\nearly ")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "test" {
		t.Fatalf("101: %v %v", resp, err)
	}
	send(t, c, "late")
	_ = c.(*net.TCPConn).CloseWrite()
	rest, _ := io.ReadAll(br)
	if string(rest) != "echo:early late" {
		t.Fatalf("tunnel: %q", rest)
	}
}

func TestServeShutdown(t *testing.T) {
	release, inHandler := make(chan struct{}), make(chan struct{})
	slow := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if r.Path == "/slow" {
			close(inHandler)
			<-release
		}
		echoHandler(w, r)
	})
	s, addr := startServer(t, ServerConfig{Handler: slow})
	idle, ibr := rawConn(t, addr)
	send(t, idle, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	readResp(t, ibr, "GET")
	busy, bbr := rawConn(t, addr)
	send(t, busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-inHandler
	// The idle connection is waiting for its next request: Shutdown
	// closes it at once. It may race the connection going idle, so wait
	// until it is seen idle first.
	waitIdle(t, s, 1)
	s.Shutdown()
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after Shutdown: %v, want EOF", err)
	}
	close(release)
	resp, body := readResp(t, bbr, "GET")
	if body != "GET /slow " || !resp.Close {
		t.Fatalf("in-flight request: %q close %v, want answered with Connection: close", body, resp.Close)
	}
}

// waitIdle waits until n of s's connections wait for a request.
func waitIdle(t *testing.T, s *Server, n int) {
	t.Helper()
	idle := 0
	testkit.WaitFor(t, 5*time.Second, fmt.Sprintf("%d idle connections", n), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		idle = 0
		for c := range s.conns {
			if c.state.Load() == stateIdle {
				idle++
			}
		}
		return idle >= n
	})
}

// okHandler answers 200 "ok" without allocating.
func okHandler() exchange.Handler {
	h, body := new(exchange.Header), []byte("ok")
	return handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		_ = w.WriteHeader(200, h, 2)
		_, _ = w.Write(body)
		_ = w.Finish(nil)
	})
}

// BenchmarkServeKeepAlive measures the engine alone: one keep-alive
// request and response over loopback TCP (client and server share the
// CPUs; ns/op includes both sides and two syscalls each).
func BenchmarkServeKeepAlive(b *testing.B) {
	s, err := NewServer(ServerConfig{Handler: okHandler()})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() { _ = s.Serve(ln) }()
	defer s.Close()
	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	req := []byte("GET /api/v1/items?x=1 HTTP/1.1\r\nHost: bench.example.com\r\nUser-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadAtLeast(c, buf, 40); err != nil {
			b.Fatal(err)
		}
	}
}
