package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/testkit"
)

// rawFrontEnd dials the front end for hand-written requests.
func rawFrontEnd(t *testing.T, fe *frontEnd) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(fe.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestChunkedBothWays sends a chunked body with a trailer through the
// proxy and gets a chunked response with a trailer back.
func TestChunkedBothWays(t *testing.T) {
	backend := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Resp-Sum")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "got "+string(body)+" te="+strings.Join(r.TransferEncoding, ",")+" trailer="+r.Trailer.Get("X-Req-Sum"))
		w.(http.Flusher).Flush() // unknown length: chunked
		w.Header().Set("X-Resp-Sum", "99")
	})
	var holder tables
	holder.Store(table(1, vhost("c.example.com", prefix("/", be("c", addrOf(backend))))))
	_, fe := newProxy(t, &holder, Config{})
	c, br := rawFrontEnd(t, fe)
	_, _ = io.WriteString(c, "POST /up HTTP/1.1\r\nHost: c.example.com\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Sum\r\n\r\n"+
		"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Req-Sum: 5\r\n\r\n")
	resp, body := readResponse(t, br, "POST")
	if body != "got abcde te=chunked trailer=5" {
		t.Fatalf("backend saw %q", body)
	}
	if resp.Trailer.Get("X-Resp-Sum") != "99" || len(resp.TransferEncoding) != 1 {
		t.Fatalf("response trailer %v, transfer encoding %v", resp.Trailer, resp.TransferEncoding)
	}
}

// TestExpectContinue: the client's Expect: 100-continue reaches the
// backend, whose 100 reaches the client before it sends the body; a backend
// that answers at once gets no body, and the client's connection closes.
func TestExpectContinue(t *testing.T) {
	backend := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reject" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		body, _ := io.ReadAll(r.Body) // net/http sends 100 Continue here
		_, _ = io.WriteString(w, "expect="+r.Header.Get("Expect")+" body="+string(body))
	})
	var holder tables
	holder.Store(table(1, vhost("e.example.com", prefix("/", be("e", addrOf(backend))))))
	_, fe := newProxy(t, &holder, Config{})
	c, br := rawFrontEnd(t, fe)
	_, _ = io.WriteString(c, "PUT /ok HTTP/1.1\r\nHost: e.example.com\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim %q %v", line, err)
	}
	_, _ = br.ReadString('\n')
	_, _ = io.WriteString(c, "data")
	if _, body := readResponse(t, br, "PUT"); body != "expect=100-continue body=data" {
		t.Fatalf("backend saw %q", body)
	}
	_, _ = io.WriteString(c, "PUT /reject HTTP/1.1\r\nHost: e.example.com\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	if resp, _ := readResponse(t, br, "PUT"); resp.StatusCode != 403 || !resp.Close {
		t.Fatalf("early answer: %d close %v, want 403 and close (the body is unread)", resp.StatusCode, resp.Close)
	}
}

// TestStalePooledConnection: the backend closes idle keep-alive
// connections; the next requests (a GET, found stale after writing, and a
// POST, checked before writing) get fresh connections, not 502s.
func TestStalePooledConnection(t *testing.T) {
	closed := make(chan struct{}, 16)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+string(b))
	}))
	backend.Config.SetKeepAlivesEnabled(true)
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	backend.Start()
	t.Cleanup(backend.Close)
	var holder tables
	holder.Store(table(1, vhost("s.example.com", prefix("/", be("s", addrOf(backend))))))
	reg := prometheus.NewRegistry()
	h, fe := newProxy(t, &holder, Config{Registerer: reg})
	for i, tc := range []struct{ method, body string }{{"GET", ""}, {"POST", "x"}, {"GET", ""}} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		if resp, _ := do(t, http.DefaultClient, tc.method, fe.URL+"/", "s.example.com", body); resp.StatusCode != 200 {
			t.Fatalf("request %d (%s): status %d", i, tc.method, resp.StatusCode)
		}
		// The proxy pooled its connection; the backend now closes it.
		pool := h.up.cur.Load().backends[holder.Load().HTTP.Hosts["s.example.com"].Routes[0].Backend].pools[0]
		if pool.idleCount() != 1 {
			t.Fatalf("request %d: %d pooled connections, want 1", i, pool.idleCount())
		}
		backend.CloseClientConnections()
		<-closed
	}
	if n, _ := testkit.MetricSum(t, reg, "meshgate_http_upstream_errors_total", nil); n != 0 {
		t.Fatalf("%v upstream errors, want 0", n)
	}
}

// TestUpgradeHalfClose: after a 101 the proxy tunnels both ways and passes
// a client's half-close on, so a backend that reads to EOF can still answer.
func TestUpgradeHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // a raw backend: switch, read to EOF, answer, close
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "tcp-test" || req.Header.Get("Connection") != "Upgrade" {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp-test\r\nConnection: Upgrade\r\n\r\nhello ")
		got, _ := io.ReadAll(br)
		_, _ = io.WriteString(c, "you sent "+string(got))
	}()
	var holder tables
	holder.Store(table(1, vhost("u.example.com", prefix("/", be("u", ln.Addr().String())))))
	_, fe := newProxy(t, &holder, Config{})
	c, br := rawFrontEnd(t, fe)
	_, _ = io.WriteString(c, "GET /t HTTP/1.1\r\nHost: u.example.com\r\nConnection: Upgrade\r\nUpgrade: tcp-test\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("switch: %v %v", resp, err)
	}
	_, _ = io.WriteString(c, "abc")
	_ = c.(*net.TCPConn).CloseWrite()
	rest, _ := io.ReadAll(br)
	if string(rest) != "hello you sent abc" {
		t.Fatalf("tunnel: %q", rest)
	}
}

// TestClientGoneMidBody counts a client that leaves while sending its body
// as 499 (nginx's "client closed request") and answers nothing.
func TestClientGoneMidBody(t *testing.T) {
	got := make(chan struct{})
	backend := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		close(got)
	})
	var holder tables
	holder.Store(table(1, vhost("g.example.com", prefix("/", be("g", addrOf(backend))))))
	reg := prometheus.NewRegistry()
	_, fe := newProxy(t, &holder, Config{Registerer: reg})
	c, _ := rawFrontEnd(t, fe)
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: g.example.com\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 40000))
	c.Close()
	<-got
	waitMetric(t, reg, "meshgate_http_requests_total", map[string]string{"code": "4xx"}, 1)
	if n, _ := testkit.MetricSum(t, reg, "meshgate_http_upstream_errors_total", map[string]string{"reason": "canceled"}); n != 1 {
		t.Fatalf("canceled upstream errors %v, want 1", n)
	}
}

// waitMetric polls a metric sum until it reaches want (the exchange is
// recorded after its connection ended, on the server's goroutine).
func waitMetric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string, want float64) {
	t.Helper()
	var n float64
	if err := testkit.Until(5*time.Second, func() bool { n, _ = testkit.MetricSum(t, g, name, labels); return n == want }); err != nil {
		t.Fatalf("%s%v = %v, want %v", name, labels, n, want)
	}
}

// TestHTTP10Client: an HTTP/1.0 client gets a close-delimited body when
// the backend's length is unknown, and keeps its connection when it asked
// for keep-alive and the length is known.
func TestHTTP10Client(t *testing.T) {
	var stream atomic.Bool
	backend := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if stream.Load() {
			_, _ = io.WriteString(w, "part1 ")
			w.(http.Flusher).Flush()
		}
		_, _ = io.WriteString(w, "done")
	})
	var holder tables
	holder.Store(table(1, vhost("o.example.com", prefix("/", be("o", addrOf(backend))))))
	_, fe := newProxy(t, &holder, Config{})
	c, br := rawFrontEnd(t, fe)
	_, _ = io.WriteString(c, "GET / HTTP/1.0\r\nHost: o.example.com\r\nConnection: keep-alive\r\n\r\n")
	if resp, body := readResponse(t, br, "GET"); body != "done" || resp.Close {
		t.Fatalf("keep-alive 1.0: %q close %v", body, resp.Close)
	}
	stream.Store(true)
	_, _ = io.WriteString(c, "GET / HTTP/1.0\r\nHost: o.example.com\r\nConnection: keep-alive\r\n\r\n")
	raw, _ := io.ReadAll(br)
	if !strings.HasSuffix(string(raw), "\r\n\r\npart1 done") || strings.Contains(string(raw), "chunked") {
		t.Fatalf("streamed to 1.0:\n%s", raw)
	}
}
