package http1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// FuzzRequest reads arbitrary bytes as a stream of pipelined requests,
// the way the server engine does, and checks it differentially against
// net/http's parser (http.ReadRequest, then the body): every request we
// accept, net/http must accept too, with the same method, target,
// version, Host, percent-decoded path, fields, framing, connection
// decision, body bytes and trailers, and the next request must start at
// the same byte. The converse — everything net/http refuses, we refuse —
// follows. We refuse more than net/http on purpose; the package
// documentation lists where.
//
// Seeds: the smuggling suite, the accepted examples of
// TestParseRequestHead and testdata/fuzz/FuzzRequest.
func FuzzRequest(f *testing.F) {
	for _, tc := range smuggling {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /y HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n3;e=\"q\"\r\nabc\r\n0\r\nX: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("GET http://b.example:8/%41?q HTTP/1.1\r\nHost: c\r\nPragma: no-cache\r\nfoo: 1\r\nFOO: 2\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ours, _ := readMessages(string(in))
		br := bufio.NewReader(bytes.NewReader(in))
		for i, m := range ours {
			req, err := http.ReadRequest(br)
			if err != nil {
				t.Fatalf("request %d: we accepted %q, net/http refused: %v", i, m.head.RawTarget, err)
			}
			compareRequest(t, i, m, req)
		}
	})
}

// compareRequest fails t when net/http read req differently from m.
func compareRequest(t *testing.T, i int, m *message, req *http.Request) {
	t.Helper()
	h := &m.head
	goPath := req.URL.Path
	if goPath == "" && h.Form == FormAbsolute {
		goPath = "/" // net/url leaves an empty path empty; the origin form needs "/"
	}
	wantCL := h.ContentLength
	switch {
	case h.Chunked:
		wantCL = -1
	case wantCL < 0:
		wantCL = 0
	}
	for _, c := range []struct {
		what      string
		ours, gos any
	}{
		{"method", h.Method, req.Method},
		{"target", h.RawTarget, req.RequestURI},
		{"minor version", h.Minor, req.ProtoMinor},
		{"host", h.Host, req.Host},
		{"path", h.Path, goPath},
		{"close", h.Close, req.Close},
		{"content length", wantCL, req.ContentLength},
		{"chunked", h.Chunked, slices.Equal(req.TransferEncoding, []string{"chunked"})},
	} {
		if c.ours != c.gos {
			t.Fatalf("request %d: %s: ours %q, net/http %q", i, c.what, c.ours, c.gos)
		}
	}
	if ours, gos := canonical(h.Fields.Fields(), h.Chunked), goHeader(req.Header, h); !equalHeaders(ours, gos) {
		t.Fatalf("request %d: fields: ours %q, net/http %q", i, ours, gos)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatalf("request %d: we accepted its body, net/http failed: %v", i, err)
	}
	if string(body) != m.body {
		t.Fatalf("request %d: body: ours %q, net/http %q", i, m.body, body)
	}
	goTrailer := http.Header{}
	for k, v := range req.Trailer {
		if v != nil {
			goTrailer[k] = v
		}
	}
	if ours := canonical(m.trailer, false); !equalHeaders(ours, goTrailer) {
		t.Fatalf("request %d: trailer: ours %q, net/http %q", i, ours, goTrailer)
	}
}

// canonical groups fields the way net/http's Header does, dropping what
// http.ReadRequest removes from it (Host, Transfer-Encoding, and Trailer
// on a chunked request).
func canonical(fields []exchange.Field, chunked bool) http.Header {
	h := http.Header{}
	for _, f := range fields {
		k := http.CanonicalHeaderKey(f.Name)
		if k == "Host" || k == "Transfer-Encoding" || (chunked && k == "Trailer") {
			continue
		}
		h[k] = append(h[k], f.Value)
	}
	return h
}

// goHeader drops the Cache-Control net/http synthesises from "Pragma:
// no-cache" (RFC 7234 §5.4), which was not on the wire.
func goHeader(h http.Header, ours *RequestHead) http.Header {
	if !ours.Fields.Has("Cache-Control") && h.Get("Cache-Control") == "no-cache" {
		h = h.Clone()
		delete(h, "Cache-Control")
	}
	return h
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// FuzzResponse checks the response head parser against net/http's
// http.ReadResponse: a head we accept must be read by net/http with the
// same status and the same body framing.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil eof",
		"HTTP/1.1 204\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		n, _, err := HeadLength(in, 0)
		if err != nil || n == 0 {
			return
		}
		var r ResponseHead
		if ParseResponseHead(string(in[:n]), &r) != nil {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("we accepted %q, net/http refused: %v", in[:n], err)
		}
		if resp.StatusCode != r.Status {
			t.Fatalf("status: ours %d, net/http %d", r.Status, resp.StatusCode)
		}
		fr := r.Framing(method)
		goChunked := slices.Equal(resp.TransferEncoding, []string{"chunked"})
		switch {
		case fr == Chunked && !goChunked, fr != Chunked && fr != NoBody && goChunked:
			t.Fatalf("chunked: ours %v, net/http %v", fr == Chunked, goChunked)
		case fr == Length && resp.ContentLength != r.ContentLength:
			t.Fatalf("length: ours %d, net/http %d", r.ContentLength, resp.ContentLength)
		case fr == UntilEOF && !resp.Close:
			t.Fatal("body until EOF but net/http would reuse the connection")
		}
	})
}
