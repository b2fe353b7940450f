package http1

// Character classes of RFC 9110 §5.6 and RFC 3986, as 256-entry tables so
// that each check is one load.

// tchar: token characters (RFC 9110 §5.6.2).
var tchar = [256]bool{}

// vchar: field-vchar — VCHAR (0x21-0x7E) and obs-text (0x80-0xFF)
// (RFC 9110 §5.5). Field values may also hold SP and HTAB between them.
var vchar = [256]bool{}

// targetChar: bytes allowed in a request target: visible ASCII except '#'
// (a fragment is never sent: RFC 9110 §7.1) and obs-text (clients send raw
// UTF-8 in paths and queries; net/http and nginx accept it, and it is
// forwarded unchanged).
var targetChar = [256]bool{}

// hostChar: bytes of a reg-name or IPv4 address in a Host value: RFC 3986
// unreserved and sub-delims. Percent-encoded names are refused (net/url
// refuses most of them, and no client sends one); IP literals are checked
// structurally by validHost.
var hostChar = [256]bool{}

func init() {
	for c := '0'; c <= '9'; c++ {
		tchar[c], hostChar[c] = true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		tchar[c], hostChar[c] = true, true
	}
	for c := 'A'; c <= 'Z'; c++ {
		tchar[c], hostChar[c] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tchar[c] = true
	}
	for _, c := range "-._~!$&'()*+,;=" {
		hostChar[c] = true
	}
	for c := 0x21; c <= 0xFF; c++ {
		if c != 0x7F {
			vchar[c] = true
			targetChar[c] = c != '#'
		}
	}
}

// isToken reports whether s is a non-empty token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v (already trimmed of OWS) is a field
// value: field-vchar separated by SP / HTAB. NUL, CR, LF and the other
// controls are refused, never replaced (RFC 9110 §5.5).
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; !vchar[c] && c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// validHost reports whether v is a Host field value: uri-host [":" port]
// with a reg-name / IPv4 address or a bracketed IP literal, and a port of
// digits only (RFC 9110 §7.2, RFC 3986 §3.2.2). Userinfo ("@") is not
// allowed. An empty value is valid (a URI without authority).
func validHost(v string) bool {
	host, port := v, ""
	if len(v) > 0 && v[0] == '[' {
		end := -1
		for i := 1; i < len(v); i++ {
			if v[i] == ']' {
				end = i
				break
			}
		}
		if end < 2 {
			return false
		}
		for i := 1; i < end; i++ {
			c := v[i]
			if !(c == ':' || c == '.' || isHex(c) || (c == 'v' || c == 'V')) {
				return false
			}
		}
		host, port = "", v[end+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
		}
	} else {
		for i := 0; i < len(v); i++ {
			if v[i] == ':' {
				host, port = v[:i], v[i+1:]
				break
			}
		}
		for i := 0; i < len(host); i++ {
			if !hostChar[host[i]] {
				return false
			}
		}
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// parseContentLength parses a Content-Length value: 1*DIGIT, at most
// 2^63-1. No sign, no list, no whitespace inside (RFC 9110 §8.6).
func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 19 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// decodePath percent-decodes the path of a request target for matching.
// It returns p itself when there is nothing to decode, and ok false for a
// malformed escape (net/url refuses those too).
func decodePath(p string) (string, bool) {
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", false
			}
			n++
			i += 2
		}
	}
	if n == 0 {
		return p, true
	}
	b := make([]byte, 0, len(p)-2*n)
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			b = append(b, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
			continue
		}
		b = append(b, p[i])
	}
	return string(b), true
}

// DecodePath percent-decodes the path of a request target for matching,
// as the HTTP/1.1 parser does for its own: p itself when there is nothing
// to decode, ok false for a malformed escape. Other front ends (HTTP/2)
// use it so that every protocol routes on the same path.
func DecodePath(p string) (string, bool) { return decodePath(p) }
