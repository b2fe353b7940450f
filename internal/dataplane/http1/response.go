package http1

import (
	"bytes"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// HeadLength looks for the end of a message head at the start of b and
// returns the head's length (through its empty line), or 0 while b holds no
// complete head. from is where to resume scanning: 0 at first, then the
// resume value of the previous call on the same, grown, b. It fails on a
// LF without a CR before it and on a head that starts with an empty line.
func HeadLength(b []byte, from int) (n, resume int, err error) {
	for from < len(b) {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return 0, len(b), nil
		}
		i += from
		switch {
		case i == 0 || b[i-1] != '\r':
			return 0, 0, bad("bare LF")
		case i == 1:
			return 0, 0, bad("empty line before the start line")
		case i >= 3 && b[i-2] == '\n' && b[i-3] == '\r':
			return i + 1, i + 1, nil
		}
		from = i + 1
	}
	return 0, from, nil
}

// ResponseHead is a parsed response head. Its strings are substrings of
// the head passed to ParseResponseHead.
type ResponseHead struct {
	Minor  int
	Status int
	// Fields holds every field line in received order.
	Fields exchange.Header
	// ContentLength is the Content-Length value, -1 when absent.
	ContentLength int64
	Chunked       bool
	// Close reports the server closes the connection after this response.
	Close bool
	// Connection holds the Connection values joined; ConnectionNames
	// reports that they name fields other than close / keep-alive /
	// upgrade.
	Connection      string
	ConnectionNames bool
	// Upgrade is the Upgrade field value.
	Upgrade string
}

// Framing is how a response body is delimited.
type Framing uint8

// Response body framings (RFC 9112 §6.3).
const (
	NoBody   Framing = iota // HEAD, 1xx, 204, 304
	Length                  // Content-Length
	Chunked                 // Transfer-Encoding: chunked
	UntilEOF                // neither: the body ends when the server closes
)

// Framing returns how the body of r, answering a request with method,
// is delimited.
func (r *ResponseHead) Framing(method string) Framing {
	switch {
	case method == "HEAD", r.Status < 200, r.Status == 204, r.Status == 304:
		return NoBody
	case r.Chunked:
		return Chunked
	case r.ContentLength >= 0:
		return Length
	}
	return UntilEOF
}

// ParseResponseHead parses a complete response head into r, reusing its
// storage. It is as strict as ParseRequestHead about line endings and
// field syntax (a proxy must not pass on a response another parser could
// split differently), and refuses Transfer-Encoding other than a lone
// chunked, Transfer-Encoding with Content-Length and repeated or invalid
// Content-Length.
func ParseResponseHead(head string, r *ResponseHead) error {
	fields := r.Fields
	fields.Reset()
	*r = ResponseHead{Fields: fields, ContentLength: -1}
	line, i, err := nextLine(head, 0)
	if err != nil {
		return err
	}
	if err := r.parseStatusLine(line); err != nil {
		return err
	}
	var cl, te int
	var teValue string
	for {
		line, i, err = nextLine(head, i)
		if err != nil {
			return err
		}
		if line == "" {
			break
		}
		name, value, err := splitField(line)
		if err != nil {
			return err
		}
		r.Fields.Add(name, value)
		switch kindOf(name) {
		case kindContentLength:
			cl++
			n, ok := parseContentLength(value)
			if !ok {
				return bad("invalid Content-Length")
			}
			r.ContentLength = n
		case kindTransferEncoding:
			te++
			teValue = value
		case kindConnection:
			if r.Connection == "" {
				r.Connection = value
			} else {
				r.Connection += "," + value
			}
		case kindUpgrade:
			r.Upgrade = value
		}
	}
	if i != len(head) {
		return bad("bytes after the head")
	}
	switch {
	case cl > 1:
		return bad("more than one Content-Length")
	case te > 1 || (te == 1 && !exchange.EqualFold(teValue, "chunked")):
		return bad("unsupported Transfer-Encoding")
	case te == 1 && cl > 0:
		return bad("both Transfer-Encoding and Content-Length")
	case te == 1 && r.Minor == 0:
		return bad("Transfer-Encoding in HTTP/1.0")
	}
	r.Chunked = te == 1
	o := parseConnection(r.Connection)
	r.ConnectionNames = o.names || o.invalid
	r.Close = o.close || (r.Minor == 0 && !o.keepAlive)
	return nil
}

// parseStatusLine parses HTTP-version SP 3DIGIT [SP reason-phrase]. The
// reason is not kept: the proxy sends its own. A missing reason (with or
// without its space) is accepted, as many servers omit it.
func (r *ResponseHead) parseStatusLine(line string) *Error {
	if len(line) < 12 || line[:7] != "HTTP/1." || line[8] != ' ' {
		return bad("malformed status line")
	}
	switch line[7] {
	case '0':
		r.Minor = 0
	case '1':
		r.Minor = 1
	default:
		return bad("unsupported HTTP version in status line")
	}
	d := line[9:12]
	if !isDigit(d[0]) || !isDigit(d[1]) || !isDigit(d[2]) || d[0] == '0' {
		return bad("malformed status code")
	}
	r.Status = int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0')
	if rest := line[12:]; rest != "" {
		if rest[0] != ' ' || !validFieldValue(rest[1:]) {
			return bad("malformed reason phrase")
		}
	}
	return nil
}
