// Package filter executes the per-route request features of the routing
// table (Gateway API filters and matches) for every front end: header
// modifiers, redirects, URL rewrites, and the request views route matching
// reads. It works on a small header abstraction that exchange.Header
// satisfies and HTTPHeader adapts net/http's Header to, so HTTP/1.1, HTTP/2
// and HTTP/3 run the same code. Nothing here allocates on the common path
// except building a redirect Location.
package filter

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
)

// Headers is what header modifiers edit. Names compare case-insensitively.
type Headers interface {
	// Get returns the first value of name.
	Get(name string) (string, bool)
	// Set replaces every value of name with value.
	Set(name, value string)
	// Add appends a value of name.
	Add(name, value string)
	// Del removes every value of name and reports whether there was one.
	Del(name string) bool
}

// ModifyHeaders applies m to h: Remove, then Set, then Add. A nil m does
// nothing.
func ModifyHeaders(m *routing.HeaderModifier, h Headers) {
	if m == nil {
		return
	}
	for _, n := range m.Remove {
		h.Del(n)
	}
	for _, x := range m.Set {
		h.Set(x.Name, x.Value)
	}
	for _, x := range m.Add {
		h.Add(x.Name, x.Value)
	}
}

// HTTPHeader adapts a net/http Header to Headers.
type HTTPHeader http.Header

// Get returns the values of name joined with ",".
func (h HTTPHeader) Get(name string) (string, bool) {
	vs := http.Header(h).Values(name)
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// Set implements Headers.
func (h HTTPHeader) Set(name, value string) { http.Header(h).Set(name, value) }

// Add implements Headers.
func (h HTTPHeader) Add(name, value string) { http.Header(h).Add(name, value) }

// Del implements Headers.
func (h HTTPHeader) Del(name string) bool {
	k := http.CanonicalHeaderKey(name)
	_, ok := h[k]
	delete(h, k)
	return ok
}

// Target is the part of a request that redirects and rewrites read and
// change.
type Target struct {
	// Scheme is "http" or "https", as the client connected.
	Scheme string
	// Host is the authority as received; it may carry a port.
	Host string
	// Path is the URL path; RawQuery the query without "?".
	Path, RawQuery string
}

// Location returns the Location of the redirect r answers to t for a
// route whose matched prefix is prefix (see routing.ReplacePath), following
// the Gateway API: empty fields keep the request's value; without a port,
// the scheme's well-known port applies when r changes the scheme, else the
// listener's; a port that is the scheme's well-known one is left out.
func Location(r *routing.Redirect, prefix string, t Target) string {
	scheme := t.Scheme
	if r.Scheme != "" {
		scheme = r.Scheme
	}
	host, reqPort := splitHost(t.Host)
	if r.Hostname != "" {
		host = r.Hostname
	}
	port := r.Port
	switch {
	case port != 0:
	case r.Scheme != "":
		port = wellKnown(scheme)
	case r.ListenerPort != 0:
		port = r.ListenerPort
	case reqPort != 0:
		port = reqPort
	default:
		port = wellKnown(scheme)
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	b.WriteString(host)
	if port != wellKnown(scheme) {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
	b.WriteString(routing.ReplacePath(r.Path, prefix, t.Path))
	if t.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(t.RawQuery)
	}
	return b.String()
}

// RedirectStatus is r's status code, 302 when unset.
func RedirectStatus(r *routing.Redirect) int {
	if r.StatusCode == 0 {
		return http.StatusFound
	}
	return r.StatusCode
}

func wellKnown(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// splitHost splits "host:port" (IPv6 literals in brackets); port is 0
// when absent or invalid.
func splitHost(hostport string) (string, int) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.Trim(hostport, "[]"), 0
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return h, 0
	}
	return h, n
}

// Rewrite applies r to t for a route whose matched prefix is prefix: the
// host is replaced when r names one, the path per r.Path. A nil r does
// nothing.
func Rewrite(r *routing.Rewrite, prefix string, t *Target) {
	if r == nil {
		return
	}
	if r.Hostname != "" {
		t.Host = r.Hostname
	}
	if r.Path != nil {
		t.Path = routing.ReplacePath(r.Path, prefix, t.Path)
	}
}
