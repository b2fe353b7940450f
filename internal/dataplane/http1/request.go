package http1

import (
	"strings"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// Error is a message this package refuses, with the status a server
// answers it with (400, 405, 417, 431, 501 or 505 for requests; a proxy
// answers a refused upstream response with 502).
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return "http1: " + e.Reason }

func bad(reason string) *Error { return &Error{Status: 400, Reason: reason} }

// Form is the form of a request target (RFC 9112 §3.2).
type Form uint8

// Request target forms.
const (
	FormOrigin   Form = iota // "/path?query"
	FormAbsolute             // "http://authority/path?query"
	FormAsterisk             // "*" (OPTIONS only)
)

// RequestHead is a parsed request head. Its strings are substrings of the
// head passed to ParseRequestHead.
type RequestHead struct {
	Method string
	// RawTarget is the request target as received; Target is it in origin
	// form (an absolute-form target loses its scheme and authority, and an
	// empty path becomes "/"), or "*".
	RawTarget, Target string
	Form              Form
	// Path is Target's path, percent-decoded ("*" for the asterisk form).
	Path string
	// Minor is the HTTP/1 minor version: 0 or 1.
	Minor int
	// Host is the authority: that of an absolute-form target, else the
	// Host field's value ("" when absent, HTTP/1.0 only).
	Host string
	// Fields holds every field line in received order, Host and the
	// framing and connection fields included.
	Fields exchange.Header

	// ContentLength is the body length, -1 without Content-Length (then
	// the body is chunked or absent).
	ContentLength int64
	Chunked       bool
	// Close reports the connection closes after this exchange:
	// "Connection: close", or HTTP/1.0 without "Connection: keep-alive".
	Close bool
	// KeepAlive10 reports an HTTP/1.0 "Connection: keep-alive".
	KeepAlive10 bool
	// Expect100 reports "Expect: 100-continue" on HTTP/1.1.
	Expect100 bool
	// Upgrade is the Upgrade value when Connection lists "upgrade".
	Upgrade string
	// TETrailers reports "TE: trailers".
	TETrailers bool
	// ConnectionNames reports that Connection names fields other than
	// close, keep-alive and upgrade; they are hop-by-hop (RFC 9110 §7.6.1).
	ConnectionNames bool
	// Connection holds the Connection values joined ("" when absent), to
	// look the named fields up.
	Connection string
}

// fieldKind classifies the field names the parser acts on.
type fieldKind uint8

const (
	kindOther fieldKind = iota
	kindHost
	kindContentLength
	kindTransferEncoding
	kindConnection
	kindExpect
	kindUpgrade
	kindTE
	kindTrailer
	kindFramingLookalike
)

// kindOf classifies a field name by length first, then case-insensitively.
func kindOf(name string) fieldKind {
	switch len(name) {
	case 2:
		if exchange.EqualFold(name, "TE") {
			return kindTE
		}
	case 4:
		if exchange.EqualFold(name, "Host") {
			return kindHost
		}
	case 6:
		if exchange.EqualFold(name, "Expect") {
			return kindExpect
		}
	case 7:
		if exchange.EqualFold(name, "Upgrade") {
			return kindUpgrade
		}
		if exchange.EqualFold(name, "Trailer") {
			return kindTrailer
		}
	case 10:
		if exchange.EqualFold(name, "Connection") {
			return kindConnection
		}
	case 14:
		if exchange.EqualFold(name, "Content-Length") {
			return kindContentLength
		}
		if exchange.EqualFold(name, "Content_Length") {
			return kindFramingLookalike
		}
	case 17:
		if exchange.EqualFold(name, "Transfer-Encoding") {
			return kindTransferEncoding
		}
		if exchange.EqualFold(name, "Transfer_Encoding") {
			return kindFramingLookalike
		}
	}
	return kindOther
}

// nextLine returns the line at head[i:] without its CRLF and the index
// after it. A LF without CR before it is refused (RFC 9112 §2.2 lets a
// recipient accept a bare LF; accepting what a backend would read
// differently is how requests get smuggled). A CR elsewhere is refused by
// the callers' character checks.
func nextLine(head string, i int) (line string, next int, err *Error) {
	j := strings.IndexByte(head[i:], '\n')
	if j < 0 {
		return "", 0, bad("incomplete head")
	}
	j += i
	if j == i || head[j-1] != '\r' {
		return "", 0, bad("bare LF")
	}
	return head[i : j-1], j + 1, nil
}

// ParseRequestHead parses a complete request head — the request line, the
// field lines and the empty line, as found by HeadLength — into r, reusing
// r's storage. It refuses (with *Error) everything RFC 9112 lets a server
// refuse that could frame or route the message differently from another
// parser: see the package documentation for the list.
func ParseRequestHead(head string, r *RequestHead) error {
	fields := r.Fields
	fields.Reset()
	*r = RequestHead{Fields: fields, ContentLength: -1}
	line, i, err := nextLine(head, 0)
	if err != nil {
		return err
	}
	if err := r.parseRequestLine(line); err != nil {
		return err
	}
	var c counts
	for {
		line, i, err = nextLine(head, i)
		if err != nil {
			return err
		}
		if line == "" {
			break
		}
		if err := r.parseField(line, &c); err != nil {
			return err
		}
	}
	if i != len(head) {
		return bad("bytes after the head")
	}
	if err := r.finish(&c); err != nil {
		return err
	}
	return nil
}

// parseRequestLine parses method SP request-target SP HTTP-version.
func (r *RequestHead) parseRequestLine(line string) *Error {
	sp1 := indexByte(line, ' ')
	if sp1 < 0 {
		return bad("malformed request line")
	}
	r.Method = line[:sp1]
	rest := line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 < 0 {
		return bad("malformed request line")
	}
	r.RawTarget, line = rest[:sp2], rest[sp2+1:]
	if !isToken(r.Method) {
		return bad("invalid method")
	}
	if r.RawTarget == "" {
		return bad("empty request target")
	}
	switch line {
	case "HTTP/1.1":
		r.Minor = 1
	case "HTTP/1.0":
		r.Minor = 0
	default:
		if len(line) == 8 && line[:5] == "HTTP/" && isDigit(line[5]) && line[6] == '.' && isDigit(line[7]) {
			return &Error{Status: 505, Reason: "unsupported HTTP version " + line}
		}
		return bad("malformed HTTP version")
	}
	for i := 0; i < len(r.RawTarget); i++ {
		if !targetChar[r.RawTarget[i]] {
			return bad("invalid byte in request target")
		}
	}
	if r.Method == "CONNECT" {
		return &Error{Status: 405, Reason: "CONNECT is not supported"}
	}
	return r.parseTarget()
}

// parseTarget classifies RawTarget and derives Target, Path and, for the
// absolute form, Host.
func (r *RequestHead) parseTarget() *Error {
	t := r.RawTarget
	switch {
	case t[0] == '/':
		r.Form, r.Target = FormOrigin, t
	case t == "*":
		if r.Method != "OPTIONS" {
			return bad("asterisk target outside OPTIONS")
		}
		r.Form, r.Target, r.Path = FormAsterisk, t, t
		return nil
	default:
		rest, ok := cutScheme(t)
		if !ok {
			return bad("malformed request target")
		}
		end := len(rest)
		for i := 0; i < len(rest); i++ {
			if rest[i] == '/' || rest[i] == '?' {
				end = i
				break
			}
		}
		authority := rest[:end]
		if authority == "" || indexByte(authority, '@') >= 0 || !validHost(authority) {
			return bad("invalid authority in request target")
		}
		r.Form, r.Host = FormAbsolute, authority
		switch {
		case end == len(rest):
			r.Target = "/"
		case rest[end] == '?':
			// "http://a?q": the origin form needs a path. One allocation,
			// on a rare form.
			r.Target = "/" + rest[end:]
		default:
			r.Target = rest[end:]
		}
	}
	p := r.Target
	if q := indexByte(p, '?'); q >= 0 {
		p = p[:q]
	}
	var ok bool
	if r.Path, ok = decodePath(p); !ok {
		return bad("malformed percent-encoding in path")
	}
	return nil
}

// cutScheme strips a case-insensitive "http://" or "https://".
func cutScheme(t string) (string, bool) {
	for _, s := range [...]string{"http://", "https://"} {
		if len(t) >= len(s) && exchange.EqualFold(t[:len(s)], s) {
			return t[len(s):], true
		}
	}
	return "", false
}

// counts tracks fields whose number matters.
type counts struct {
	host, cl, te int
	expect       string
	expectOther  bool
	teValues     string // Transfer-Encoding values joined, only when te > 1
	upgrade      string
}

// parseField parses and records one field line.
func (r *RequestHead) parseField(line string, c *counts) *Error {
	name, value, err := splitField(line)
	if err != nil {
		return err
	}
	r.Fields.Add(name, value)
	switch kindOf(name) {
	case kindHost:
		c.host++
		if r.Form != FormAbsolute {
			r.Host = value
		}
		if !validHost(value) {
			return bad("invalid Host")
		}
	case kindContentLength:
		c.cl++
		n, ok := parseContentLength(value)
		if !ok {
			return bad("invalid Content-Length")
		}
		r.ContentLength = n
	case kindTransferEncoding:
		c.te++
		if c.te == 1 {
			c.teValues = value
		} else {
			c.teValues += "," + value
		}
	case kindConnection:
		if r.Connection == "" {
			r.Connection = value
		} else {
			r.Connection += "," + value
		}
	case kindExpect:
		switch {
		case exchange.EqualFold(value, "100-continue"):
			c.expect = value
		case value != "":
			c.expectOther = true
		}
	case kindUpgrade:
		if c.upgrade == "" {
			c.upgrade = value
		} else {
			c.upgrade += ", " + value
		}
	case kindTE:
		if exchange.HasToken(value, "trailers") {
			r.TETrailers = true
		}
	case kindTrailer:
		// Framing fields may not be trailers (RFC 9110 §6.5.1); net/http
		// refuses a chunked request announcing them.
		for _, f := range [...]string{"Transfer-Encoding", "Content-Length", "Trailer"} {
			if exchange.HasToken(value, f) {
				return bad("Trailer announces " + f)
			}
		}
	case kindFramingLookalike:
		// Some backends map "_" to "-" in field names (CGI-style
		// environments): they would frame the body by a field we ignore.
		return bad("framing field name with an underscore")
	}
	return nil
}

// splitField splits a field line into name and OWS-trimmed value,
// refusing obs-fold, whitespace before the colon, non-token names and
// invalid value bytes (RFC 9112 §5).
func splitField(line string) (name, value string, err *Error) {
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", bad("obsolete line folding")
	}
	colon := indexByte(line, ':')
	if colon < 0 {
		return "", "", bad("field line without colon")
	}
	name = line[:colon]
	if !isToken(name) {
		return "", "", bad("invalid field name")
	}
	value = exchange.TrimOWS(line[colon+1:])
	if !validFieldValue(value) {
		return "", "", bad("invalid field value")
	}
	return name, value, nil
}

// finish applies the rules that need every field: Host presence, body
// framing (RFC 9112 §6) and the connection options.
func (r *RequestHead) finish(c *counts) *Error {
	if c.host > 1 || (c.host == 0 && r.Minor == 1) {
		return bad("HTTP/1.1 request needs exactly one Host")
	}
	if c.cl > 1 {
		return bad("more than one Content-Length")
	}
	if c.te > 0 {
		if err := r.transferEncoding(c); err != nil {
			return err
		}
	}
	if c.expectOther {
		return &Error{Status: 417, Reason: "unsupported expectation"}
	}
	r.Expect100 = c.expect != "" && r.Minor == 1
	o := parseConnection(r.Connection)
	if o.invalid {
		return bad("invalid Connection option")
	}
	r.ConnectionNames = o.names
	r.Close = o.close || (r.Minor == 0 && !o.keepAlive)
	r.KeepAlive10 = r.Minor == 0 && o.keepAlive && !o.close
	if o.upgrade && r.Minor == 1 {
		r.Upgrade = c.upgrade
	}
	return nil
}

// connOptions are the options a Connection field lists (RFC 9110 §7.6.1).
type connOptions struct {
	close, keepAlive, upgrade bool
	names                     bool // other field names: hop-by-hop fields
	invalid                   bool // an element that is not a token
}

func parseConnection(v string) connOptions {
	var o connOptions
	exchange.Tokens(v, func(tok string) bool {
		switch {
		case exchange.EqualFold(tok, "close"):
			o.close = true
		case exchange.EqualFold(tok, "keep-alive"):
			o.keepAlive = true
		case exchange.EqualFold(tok, "upgrade"):
			o.upgrade = true
		case isToken(tok):
			o.names = true
		default:
			o.invalid = true
		}
		return true
	})
	return o
}

// transferEncoding decides the framing of a request with
// Transfer-Encoding: only a lone "chunked" is served. A request that also
// has Content-Length, or that is HTTP/1.0, has framing two parsers may
// read differently: 400 (RFC 9112 §6.1, §6.3). Codings before a final
// chunked are valid but not implemented: 501. A final coding other than
// chunked leaves the length undeterminable: 400.
func (r *RequestHead) transferEncoding(c *counts) *Error {
	if r.ContentLength >= 0 {
		return bad("both Transfer-Encoding and Content-Length")
	}
	if r.Minor == 0 {
		return bad("Transfer-Encoding in HTTP/1.0")
	}
	n, last := 0, ""
	exchange.Tokens(c.teValues, func(tok string) bool {
		n++
		last = tok
		return true
	})
	switch {
	case n == 1 && exchange.EqualFold(last, "chunked"):
		r.Chunked = true
		return nil
	case n > 1 && exchange.EqualFold(last, "chunked"):
		return &Error{Status: 501, Reason: "unsupported transfer coding"}
	default:
		return bad("chunked is not the final transfer coding")
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func indexByte(s string, c byte) int { return strings.IndexByte(s, c) }
