package http1

import (
	"errors"
	"strings"
	"testing"
)

// smuggling lists request payloads that frame, route or split differently
// depending on the parser (RFC 9112 §11.2 and the published desync
// research: CL.TE / TE.CL / TE.TE, header-name and value obfuscation,
// line-ending confusion, chunk-size and extension tricks, absolute-form
// and Host confusion). Each must be refused with the given status and
// reason; none may yield a second request. The payloads are written here
// from those descriptions, one class per entry.
var smuggling = []struct {
	name, in      string
	status        int
	reason        string
	acceptedFirst int // requests served before the refusal (pipelined cases)
}{
	// Content-Length and Transfer-Encoding disagreeing (CL.TE, TE.CL).
	{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400, "both Transfer-Encoding and Content-Length", 0},
	{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400, "both Transfer-Encoding and Content-Length", 0},
	{"CL.CL different", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 8\r\n\r\nabcdefgh", 400, "more than one Content-Length", 0},
	{"CL.CL equal", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, "more than one Content-Length", 0},
	{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400, "invalid Content-Length", 0},
	{"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400, "invalid Content-Length", 0},
	{"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content-Length", 0},
	{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc", 400, "invalid Content-Length", 0},
	{"CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400, "invalid Content-Length", 0},
	{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400, "invalid Content-Length", 0},
	{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "invalid Content-Length", 0},
	{"CL 2^63", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", 400, "invalid Content-Length", 0},
	{"CL underscore", "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\nGET /", 400, "framing field name with an underscore", 0},

	// Transfer-Encoding obfuscation (TE.TE).
	{"TE not final", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400, "chunked is not the final transfer coding", 0},
	{"TE unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400, "chunked is not the final transfer coding", 0},
	{"TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400, "chunked is not the final transfer coding", 0},
	{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400, "chunked is not the final transfer coding", 0},
	{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400, "chunked is not the final transfer coding", 0},
	{"TE second field", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 400, "chunked is not the final transfer coding", 0},
	{"TE gzip then chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "unsupported transfer coding", 0},
	{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "unsupported transfer coding", 0},
	{"TE space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400, "invalid field name", 0},
	{"TE tab before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", 400, "invalid field name", 0},
	{"TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n", 400, "invalid field value", 0},
	{"TE NUL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chu\x00nked\r\n\r\n", 400, "invalid field value", 0},
	{"TE folded", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400, "obsolete line folding", 0},
	{"TE hidden in fold", "POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n", 400, "obsolete line folding", 0},
	{"TE underscore", "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "framing field name with an underscore", 0},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding in HTTP/1.0", 0},
	{"TE non-ASCII name", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encod\xc4\xb1ng: chunked\r\n\r\n", 400, "invalid field name", 0},

	// Line endings.
	{"bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n", 400, "bare LF", 0},
	{"bare LF ends head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF", 0},
	{"bare LF in field", "GET / HTTP/1.1\r\nHost: a\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n", 400, "bare LF", 0},
	{"bare CR in field", "GET / HTTP/1.1\r\nHost: a\r\nX: y\rTransfer-Encoding: chunked\r\n\r\n", 400, "invalid field value", 0},
	{"CR in request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid byte in request target", 0},
	{"empty line first", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty line before the start line", 0},

	// Field syntax.
	{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "invalid field name", 0},
	{"leading space first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obsolete line folding", 0},
	{"space in name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", 400, "invalid field name", 0},
	{"DEL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x7fY: z\r\n\r\n", 400, "invalid field name", 0},
	{"bracket in name", "GET / HTTP/1.1\r\nHost: a\r\n[X]: z\r\n\r\n", 400, "invalid field name", 0},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n", 400, "invalid field name", 0},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400, "field line without colon", 0},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, "invalid field value", 0},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400, "invalid field value", 0},
	{"ESC in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n", 400, "invalid field value", 0},

	// Host.
	{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, "HTTP/1.1 request needs exactly one Host", 0},
	{"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "HTTP/1.1 request needs exactly one Host", 0},
	{"two Host in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "HTTP/1.1 request needs exactly one Host", 0},
	{"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400, "invalid Host", 0},
	{"Host userinfo", "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, "invalid Host", 0},
	{"Host space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host", 0},
	{"Host bad port", "GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", 400, "invalid Host", 0},
	{"Host slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host", 0},
	{"Host percent", "GET / HTTP/1.1\r\nHost: a%2fb\r\n\r\n", 400, "invalid Host", 0},
	{"Host bad literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "invalid Host", 0},

	// Request line and targets.
	{"lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version", 0},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "malformed HTTP version", 0},
	{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty request target", 0},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line", 0},
	{"tab in method", "GE\tT / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method", 0},
	{"HTTP/0.9", "GET /\r\n\r\n", 400, "malformed request line", 0},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version HTTP/1.2", 0},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "unsupported HTTP version HTTP/2.0", 0},
	{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version", 0},
	{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid byte in request target", 0},
	{"NUL in target", "GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid byte in request target", 0},
	{"bad escape", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed percent-encoding in path", 0},
	{"truncated escape", "GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed percent-encoding in path", 0},
	{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target", 0},
	{"asterisk for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "asterisk target outside OPTIONS", 0},
	{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405, "CONNECT is not supported", 0},
	{"absolute other scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target", 0},
	{"absolute userinfo", "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid authority in request target", 0},
	{"absolute empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid authority in request target", 0},
	{"absolute bad port", "GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid authority in request target", 0},
	{"absolute scheme only", "GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target", 0},
	{"absolute without Host", "GET http://a/ HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 request needs exactly one Host", 0},

	// Expectations.
	{"unknown expectation", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continuex\r\nContent-Length: 1\r\n\r\nx", 417, "unsupported expectation", 0},

	// Connection options.
	{"Connection non-token", "GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n", 400, "invalid Connection option", 0},

	// Trailer announcing framing fields.
	{"Trailer Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nTrailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n", 400, "Trailer announces Content-Length", 0},
	{"Trailer Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTrailer: x, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Trailer announces Transfer-Encoding", 0},

	// Chunked bodies: the request head is fine, the body is not, so the
	// refusal is a body error and nothing after it is read.
	{"chunk size not hex", chunkedReq("g\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk size leading space", chunkedReq(" 1\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk size trailing space", chunkedReq("1 \r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk size 0x", chunkedReq("0x1\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk size negative", chunkedReq("-1\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk size 17 digits", chunkedReq("00000000000000001\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk size 2^63", chunkedReq("8000000000000000\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk size empty", chunkedReq("\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk ext space before semicolon", chunkedReq("1 ;a=b\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk ext no name", chunkedReq("1;\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk ext control", chunkedReq("1;a=\x01\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk ext unterminated quote", chunkedReq("1;a=\"b\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk ext trailing space", chunkedReq("1;a=b \r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk ext bare CR", chunkedReq("1;a\rb\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: invalid chunk size line", 0},
	{"chunk line bare LF", chunkedReq("1\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: bare LF", 0},
	{"chunk data too long", chunkedReq("1\r\nxy\r\n0\r\n\r\n"), 400, "malformed chunked encoding: chunk data not followed by CRLF", 0},
	{"chunk data LF only", chunkedReq("1\r\nx\n0\r\n\r\n"), 400, "malformed chunked encoding: chunk data not followed by CRLF", 0},
	{"chunk line too long", chunkedReq("1;a=" + strings.Repeat("b", MaxChunkLine) + "\r\nx\r\n0\r\n\r\n"), 400, "malformed chunked encoding: chunk size line too long", 0},
	{"last chunk bare LF", chunkedReq("0\n\r\n"), 400, "malformed chunked encoding: bare LF", 0},
	{"trailer folded", chunkedReq("0\r\nA: b\r\n c\r\n\r\n"), 400, "malformed chunked encoding: trailer field: obsolete line folding", 0},
	{"trailer bare LF", chunkedReq("0\r\nA: b\n\r\n"), 400, "malformed chunked encoding: bare LF in trailer section", 0},
	{"trailer bad name", chunkedReq("0\r\nA b: c\r\n\r\n"), 400, "malformed chunked encoding: trailer field: invalid field name", 0},
	{"extension flood", chunkedReq(strings.Repeat("1;"+strings.Repeat("x", 900)+"\r\nx\r\n", 40) + "0\r\n\r\n"), 400, "malformed chunked encoding: too much framing for the data", 0},

	// A valid request, then a smuggled one: the first is served, the
	// second refused on its own merits.
	{"pipelined refusal", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "both Transfer-Encoding and Content-Length", 1},
}

func chunkedReq(body string) string {
	return "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body
}

func TestSmuggling(t *testing.T) {
	for _, tc := range smuggling {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := readMessages(tc.in)
			if len(msgs) != tc.acceptedFirst {
				t.Fatalf("%d requests read before the refusal, want %d", len(msgs), tc.acceptedFirst)
			}
			status, reason := refusal(err)
			if status != tc.status || reason != tc.reason {
				t.Fatalf("refused with %d %q (%v), want %d %q", status, reason, err, tc.status, tc.reason)
			}
		})
	}
}

// refusal maps a read error to the status and reason a server answers:
// head errors carry theirs; chunked framing errors are 400.
func refusal(err error) (int, string) {
	var he *Error
	var ce *chunkErr
	switch {
	case errors.As(err, &he):
		return he.Status, he.Reason
	case errors.As(err, &ce):
		return 400, strings.TrimPrefix(ce.Error(), "http1: ")
	case err == nil:
		return 0, "accepted"
	}
	return 0, err.Error()
}
