package http1

import (
	"strings"
	"testing"
	"testing/iotest"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

func TestParseRequestHead(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(t *testing.T, r *RequestHead, body string)
	}{
		{"simple GET", "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nAccept: */*\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "method", r.Method, "GET")
			want(t, "target", r.Target, "/a/b?x=1")
			want(t, "path", r.Path, "/a/b")
			want(t, "host", r.Host, "Example.COM:8080")
			want(t, "minor", r.Minor, 1)
			want(t, "fields", r.Fields.Len(), 2)
			want(t, "close", r.Close, false)
			want(t, "content length", r.ContentLength, int64(-1))
		}},
		{"OWS trimmed both sides", "GET / HTTP/1.1\r\nHost:a\r\nX-A: \t v \t\r\nX-B:\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "X-A", r.Fields.Value("x-a"), "v")
			want(t, "X-B present", r.Fields.Has("X-B"), true)
			want(t, "X-B", r.Fields.Value("X-B"), "")
		}},
		{"value keeps inner spaces and obs-text", "GET / HTTP/1.1\r\nHost: a\r\nX: a  b\xc3\xa9\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "X", r.Fields.Value("X"), "a  b\xc3\xa9")
		}},
		{"content length body", "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", func(t *testing.T, r *RequestHead, body string) {
			want(t, "content length", r.ContentLength, int64(5))
			want(t, "body", body, "hello")
		}},
		{"content length leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc", func(t *testing.T, r *RequestHead, body string) {
			want(t, "content length", r.ContentLength, int64(3))
		}},
		{"chunked with extensions and trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\nTrailer: X-Sum\r\n\r\n" +
			"5;name = value ; q=\"a \\\" b\"\r\nhello\r\n1;x\r\n!\r\n0\r\nX-Sum: 42\r\n\r\n", func(t *testing.T, r *RequestHead, body string) {
			want(t, "chunked", r.Chunked, true)
			want(t, "body", body, "hello!")
		}},
		{"absolute form", "GET HTTP://Origin.example:81/p%2Fq?z HTTP/1.1\r\nHost: ignored.example\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "form", r.Form, FormAbsolute)
			want(t, "host", r.Host, "Origin.example:81")
			want(t, "target", r.Target, "/p%2Fq?z")
			want(t, "path", r.Path, "/p/q")
		}},
		{"absolute form without path", "GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "target", r.Target, "/")
		}},
		{"absolute form query only", "GET https://a.example?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "target", r.Target, "/?q=1")
			want(t, "path", r.Path, "/")
		}},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "form", r.Form, FormAsterisk)
			want(t, "path", r.Path, "*")
		}},
		{"IPv6 host", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "host", r.Host, "[2001:db8::1]:8443")
		}},
		{"HTTP/1.0 without Host closes", "GET / HTTP/1.0\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "minor", r.Minor, 0)
			want(t, "close", r.Close, true)
			want(t, "host", r.Host, "")
		}},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "close", r.Close, false)
			want(t, "keepalive10", r.KeepAlive10, true)
		}},
		{"connection close and names", "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "close", r.Close, true)
			want(t, "names", r.ConnectionNames, true)
			want(t, "connection", r.Connection, "X-Hop, close")
		}},
		{"websocket upgrade", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "upgrade", r.Upgrade, "websocket")
		}},
		{"upgrade without connection option", "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "upgrade", r.Upgrade, "")
		}},
		{"expect continue", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "expect", r.Expect100, true)
		}},
		{"expect ignored in HTTP/1.0", "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "expect", r.Expect100, false)
		}},
		{"TE trailers", "GET / HTTP/1.1\r\nHost: a\r\nTE: gzip, trailers\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "te trailers", r.TETrailers, true)
		}},
		{"raw UTF-8 in target", "GET /caf\xc3\xa9?q=\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "path", r.Path, "/caf\xc3\xa9")
		}},
		{"double slash is a path", "GET //evil.example/x HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, r *RequestHead, _ string) {
			want(t, "form", r.Form, FormOrigin)
			want(t, "host", r.Host, "a")
			want(t, "path", r.Path, "//evil.example/x")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := readMessages(tc.in)
			if len(msgs) != 1 {
				t.Fatalf("read %d requests (%v), want 1", len(msgs), err)
			}
			tc.check(t, &msgs[0].head, msgs[0].body)
		})
	}
}

func want[T comparable](t *testing.T, what string, got, exp T) {
	t.Helper()
	if got != exp {
		t.Errorf("%s = %v, want %v", what, got, exp)
	}
}

// TestChunkedOneByteReads feeds a chunked body one byte per read: every
// state of the decoder must survive a split anywhere.
func TestChunkedOneByteReads(t *testing.T) {
	in := "5;a=b\r\nhello\r\n3\r\n, w\r\n4\r\norld\r\n0\r\nX-T: 1\r\nY: two words\r\n\r\nNEXT"
	br := NewReader(iotest.OneByteReader(strings.NewReader(in)))
	var cr ChunkedReader
	cr.Reset(br, 0)
	var got []byte
	buf := make([]byte, 3)
	for {
		n, err := cr.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatal(err)
			}
			break
		}
	}
	if string(got) != "hello, world" {
		t.Fatalf("body %q", got)
	}
	tr := cr.Trailer()
	if tr == nil || tr.Value("x-t") != "1" || tr.Value("Y") != "two words" {
		t.Fatalf("trailer %v", tr)
	}
	rest := string(br.Buffered())
	if rest != "" && rest != "N" {
		t.Fatalf("decoder read past the body: %q buffered", rest)
	}
}

func TestAppendChunk(t *testing.T) {
	for n, want := range map[int]string{1: "1\r\n", 15: "f\r\n", 16: "10\r\n", 32768: "8000\r\n"} {
		if got := string(AppendChunkHeader(nil, n)); got != want {
			t.Errorf("AppendChunkHeader(%d) = %q, want %q", n, got, want)
		}
	}
	var tr exchange.Header
	tr.Add("X-Sum", "1")
	if got := string(AppendLastChunk(nil, &tr)); got != "0\r\nX-Sum: 1\r\n\r\n" {
		t.Errorf("last chunk %q", got)
	}
}

func TestParseResponseHead(t *testing.T) {
	tests := []struct {
		in      string
		method  string
		status  int
		framing Framing
		close   bool
		err     string
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "GET", 200, Length, false, ""},
		{"HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", 200, Chunked, false, ""},
		{"HTTP/1.1 200 \r\n\r\n", "GET", 200, UntilEOF, false, ""},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", "GET", 200, Length, true, ""},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", "GET", 200, Length, false, ""},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "HEAD", 200, NoBody, false, ""},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n", "GET", 304, NoBody, false, ""},
		{"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", "GET", 204, NoBody, true, ""},
		{"HTTP/1.1 100 Continue\r\n\r\n", "PUT", 100, NoBody, false, ""},
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "GET", 101, NoBody, false, ""},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", 0, 0, false, "both Transfer-Encoding and Content-Length"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", 0, 0, false, "unsupported Transfer-Encoding"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", "GET", 0, 0, false, "more than one Content-Length"},
		{"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\n", "GET", 0, 0, false, "bare LF"},
		{"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "GET", 0, 0, false, "obsolete line folding"},
		{"HTTP/1.1 2000 OK\r\n\r\n", "GET", 0, 0, false, "malformed reason phrase"},
		{"HTTP/1.1 099 OK\r\n\r\n", "GET", 0, 0, false, "malformed status code"},
		{"HTTP/2.0 200 OK\r\n\r\n", "GET", 0, 0, false, "malformed status line"},
		{"HTTP/1.1 200 O\x00K\r\n\r\n", "GET", 0, 0, false, "malformed reason phrase"},
	}
	for _, tc := range tests {
		var r ResponseHead
		err := ParseResponseHead(tc.in, &r)
		if tc.err != "" {
			if err == nil || err.(*Error).Reason != tc.err {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if r.Status != tc.status || r.Framing(tc.method) != tc.framing || r.Close != tc.close {
			t.Errorf("%q: status %d framing %d close %v, want %d %d %v", tc.in, r.Status, r.Framing(tc.method), r.Close, tc.status, tc.framing, tc.close)
		}
	}
}

// TestParseAllocs guards the parser's cost per request: once the Header's
// storage has grown, parsing a head allocates nothing.
func TestParseAllocs(t *testing.T) {
	head := "GET /api/v1/items?x=1 HTTP/1.1\r\nHost: bench.example.com\r\nUser-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"
	var r RequestHead
	if err := ParseRequestHead(head, &r); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ParseRequestHead(head, &r) }); n != 0 {
		t.Fatalf("%v allocations per request head, want 0", n)
	}
	resp := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 23 Nov 2026 13:22:04 GMT\r\nContent-Length: 512\r\n\r\n"
	var rh ResponseHead
	if err := ParseResponseHead(resp, &rh); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ParseResponseHead(resp, &rh) }); n != 0 {
		t.Fatalf("%v allocations per response head, want 0", n)
	}
}
