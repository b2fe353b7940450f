package h2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestGoClient drives the server with x/net's HTTP/2 client, over TLS and
// with prior knowledge: heads, bodies both ways, trailers, concurrency.
func TestGoClient(t *testing.T) {
	for _, tlsOn := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			ts := newTestServer(t, tlsOn, nil)
			cl := ts.client()

			resp, err := cl.Get(ts.url("/a%20b?q=1"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
				t.Fatalf("got %s %d", resp.Proto, resp.StatusCode)
			}
			if want := "GET " + ts.addr + " /a%20b?q=1 /a b\n"; string(b) != want {
				t.Fatalf("body %q, want %q", b, want)
			}
			if resp.Header.Get("Date") == "" {
				t.Fatal("no date field")
			}

			// A body with a length, one without, and request trailers.
			req, _ := http.NewRequest("POST", ts.url("/up"), strings.NewReader("hello"))
			req.Header.Set("X-A", "1")
			resp, err = cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasSuffix(string(b), "\nhello") || resp.Header.Get("X-Echo-X-A") != "1" {
				t.Fatalf("echo %q %v", b, resp.Header)
			}
			pr, pw := io.Pipe()
			req, _ = http.NewRequest("PUT", ts.url("/up"), pr)
			req.Trailer = http.Header{"Grpc-Status": nil}
			req.Header.Set("Te", "trailers")
			go func() {
				_, _ = pw.Write(bytes.Repeat([]byte("x"), 300<<10))
				req.Trailer.Set("Grpc-Status", "0")
				_ = pw.Close()
			}()
			resp, err = cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if n := strings.Count(string(b), "x"); n != 300<<10 {
				t.Fatalf("echoed %d body bytes, want %d", n, 300<<10)
			}
			if resp.Trailer.Get("Grpc-Status") != "0" || resp.Header.Get("X-Trailers-Ok") != "1" {
				t.Fatalf("trailers %v, header %v", resp.Trailer, resp.Header)
			}

			// Concurrent streams with large responses: flow control both
			// ways (the client's default window is smaller than 1 MiB).
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for i := 0; i < 32; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					p := "/big/1048576"
					if i%2 == 1 {
						p = "/stream/100000"
					}
					resp, err := cl.Get(ts.url(p))
					if err != nil {
						errs <- err
						return
					}
					n, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || (n != 1048576 && n != 100000) {
						errs <- fmt.Errorf("%s: %d bytes, %v", p, n, err)
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}

			resp, err = cl.Get(ts.url("/empty"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 204 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			req, _ = http.NewRequest("HEAD", ts.url("/big/10"), nil)
			resp, err = cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.ContentLength != 10 {
				t.Fatalf("HEAD content-length %d", resp.ContentLength)
			}
		})
	}
}

// TestUnfinishedResponseIsReset: a handler that returns without Finish
// must not look like a complete response.
func TestUnfinishedResponseIsReset(t *testing.T) {
	ts := newTestServer(t, false, nil)
	rc := ts.raw(t)
	rc.headers(1, true, get("/noend")...)
	if got := rc.status(1); got != "200" {
		t.Fatalf("status %q", got)
	}
	if code := rc.rst(1); code != http2.ErrCodeInternal {
		t.Fatalf("RST code %v, want INTERNAL_ERROR", code)
	}
}

// TestClientResetCancels: a client RST_STREAM cancels the request's
// context.
func TestClientResetCancels(t *testing.T) {
	ts := newTestServer(t, false, nil)
	rc := ts.raw(t)
	rc.headers(1, true, get("/block")...)
	rc.headers(3, true, get("/x")...)
	if got := rc.status(3); got != "200" {
		t.Fatalf("status %q", got)
	}
	if err := rc.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	// A PING answered after the stream's handler returned: the handler's
	// cancellation is counted before the server reads further frames only
	// eventually, so wait on the handler through the next request.
	rc.headers(5, true, get("/x")...)
	rc.status(5)
	for i := 0; ts.h.canceled.Load() == 0 && i < 1000; i++ {
		if err := rc.fr.WritePing(false, [8]byte{}); err != nil {
			t.Fatal(err)
		}
		rc.until("PING ack", func(f http2.Frame) bool { _, ok := f.(*http2.PingFrame); return ok })
	}
	if ts.h.canceled.Load() != 1 {
		t.Fatal("the handler's context was not cancelled by RST_STREAM")
	}
}

// TestRefusals: what the server does not accept gets the RFC's answer.
func TestRefusals(t *testing.T) {
	ts := newTestServer(t, false, func(c *Config) { c.MaxHeaderBytes = 4096 })
	t.Run("connect", func(t *testing.T) {
		rc := ts.raw(t)
		rc.headers(1, true, ":method", "CONNECT", ":authority", "example.com:443")
		if got := rc.status(1); got != "501" {
			t.Fatalf("status %q, want 501", got)
		}
	})
	t.Run("extended connect", func(t *testing.T) {
		rc := ts.raw(t)
		rc.headers(1, true, ":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":path", "/", ":authority", "a")
		if code := rc.rst(1); code != http2.ErrCodeProtocol {
			t.Fatalf("code %v", code)
		}
	})
	t.Run("header list too large", func(t *testing.T) {
		rc := ts.raw(t)
		v := strings.Repeat("v", 1500)
		rc.headers(1, true, append(get("/"), "x-a", v, "x-b", v, "x-c", v)...)
		if got := rc.status(1); got != "431" {
			t.Fatalf("status %q, want 431", got)
		}
	})
	malformed := map[string][]string{
		"connection field":   append(get("/"), "connection", "keep-alive"),
		"te gzip":            append(get("/"), "te", "gzip"),
		"no path":            {":method", "GET", ":scheme", "http", ":authority", "a"},
		"relative path":      {":method", "GET", ":scheme", "http", ":path", "x", ":authority", "a"},
		"status in request":  append(get("/"), ":status", "200"),
		"host mismatch":      append(get("/"), "host", "other.example"),
		"userinfo":           {":method", "GET", ":scheme", "http", ":path", "/", ":authority", "u@a"},
		"uppercase name":     append(get("/"), "X-Up", "1"),
		"value whitespace":   append(get("/"), "x-a", " 1"),
		"bad content-length": append(get("/"), "content-length", "1x"),
		"bad escape":         {":method", "GET", ":scheme", "http", ":path", "/%zz", ":authority", "a"},
		"length without data": {":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a",
			"content-length", "3"},
	}
	for name, kv := range malformed {
		t.Run(name, func(t *testing.T) {
			rc := ts.raw(t)
			rc.headers(1, true, kv...)
			if code := rc.rst(1); code != http2.ErrCodeProtocol {
				t.Fatalf("code %v, want PROTOCOL_ERROR", code)
			}
		})
	}
	t.Run("body longer than content-length", func(t *testing.T) {
		rc := ts.raw(t)
		rc.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a", "content-length", "2")
		_ = rc.fr.WriteData(1, true, []byte("abc"))
		if code := rc.rst(1); code != http2.ErrCodeProtocol {
			t.Fatalf("code %v", code)
		}
	})
	conn := map[string]struct {
		send func(rc *rawConn)
		code http2.ErrCode
	}{
		"even stream":     {func(rc *rawConn) { rc.headers(2, true, get("/")...) }, http2.ErrCodeProtocol},
		"data on idle":    {func(rc *rawConn) { _ = rc.fr.WriteData(7, true, []byte("x")) }, http2.ErrCodeProtocol},
		"stream 0 data":   {func(rc *rawConn) { _ = rc.fr.WriteRawFrame(http2.FrameData, 0, 0, []byte("x")) }, http2.ErrCodeProtocol},
		"window overflow": {func(rc *rawConn) { _ = rc.fr.WriteWindowUpdate(0, 1<<31-1) }, http2.ErrCodeFlowControl},
		"push promise": {func(rc *rawConn) {
			_ = rc.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true})
		}, http2.ErrCodeProtocol},
		"frame too large":   {func(rc *rawConn) { _ = rc.fr.WriteRawFrame(0xfe, 0, 0, make([]byte, 17<<10)) }, http2.ErrCodeFrameSize},
		"bad enable_push":   {func(rc *rawConn) { _ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 2}) }, http2.ErrCodeProtocol},
		"lone continuation": {func(rc *rawConn) { _ = rc.fr.WriteContinuation(1, true, rc.block(get("/")...)) }, http2.ErrCodeProtocol},
		"lower stream id": {func(rc *rawConn) {
			rc.headers(5, true, get("/")...)
			rc.status(5)
			rc.headers(3, true, get("/")...)
			rc.headers(3, true, get("/")...)
			_ = rc.fr.WriteData(9, true, nil)
		}, http2.ErrCodeProtocol},
	}
	for name, tc := range conn {
		t.Run(name, func(t *testing.T) {
			rc := ts.raw(t)
			tc.send(rc)
			if code := rc.goAway(); code != tc.code {
				t.Fatalf("GOAWAY %v, want %v", code, tc.code)
			}
		})
	}
}

// TestRapidReset: a client that opens and resets streams without ever
// letting one complete is sent away (CVE-2023-44487).
func TestRapidReset(t *testing.T) {
	ts := newTestServer(t, false, nil)
	rc := ts.raw(t)
	// Streams beyond the concurrency limit are refused without reaching a
	// handler (and cost no budget); of the 20000 at most the first few
	// hundred need to reach one, whatever the scheduling.
	go func() {
		for {
			if _, err := io.Copy(io.Discard, rc.c); err != nil {
				return
			}
		}
	}()
	for id := uint32(1); id < 40000; id += 2 {
		err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.block(get("/block")...), EndStream: true, EndHeaders: true})
		if err == nil {
			err = rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if err != nil {
			break // the server hung up
		}
	}
	for reason := ""; reason != "rapid_reset"; {
		select {
		case reason = <-ts.errs:
		case <-time.After(20 * time.Second):
			t.Fatal("no rapid_reset refusal")
		}
	}
}

// TestStreamLimit: streams beyond MaxConcurrentStreams are refused, and
// the limit counts handlers, not the client's view.
func TestStreamLimit(t *testing.T) {
	ts := newTestServer(t, false, func(c *Config) { c.MaxConcurrentStreams = 2 })
	rc := ts.raw(t)
	rc.headers(1, true, get("/block")...)
	rc.headers(3, true, get("/block")...)
	rc.headers(5, true, get("/x")...)
	if code := rc.rst(5); code != http2.ErrCodeRefusedStream {
		t.Fatalf("code %v, want REFUSED_STREAM", code)
	}
}

// TestShutdown: GOAWAY to an open connection, its stream completes, then
// the connection closes; new connections are refused.
func TestShutdown(t *testing.T) {
	ts := newTestServer(t, false, nil)
	rc := ts.raw(t)
	rc.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a")
	// The PING is answered after the HEADERS before it was handled.
	_ = rc.fr.WritePing(false, [8]byte{1})
	rc.until("PING ack", func(f http2.Frame) bool { _, ok := f.(*http2.PingFrame); return ok })
	ts.srv.Shutdown()
	if code := rc.goAway(); code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v", code)
	}
	_ = rc.fr.WriteData(1, true, []byte("late"))
	if got := rc.status(1); got != "200" {
		t.Fatalf("status %q", got)
	}
	for {
		if _, err := rc.fr.ReadFrame(); err != nil {
			break // closed after the stream
		}
	}
	cl := ts.client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.url("/"), nil)
	if resp, err := cl.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a new connection was served after Shutdown")
	}
}
