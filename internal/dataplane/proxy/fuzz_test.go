package proxy

import (
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// FuzzRedirect checks that SSL redirects are always https URLs that keep the
// request URI, whatever Host header net/http lets through.
func FuzzRedirect(f *testing.F) {
	for _, s := range []struct {
		host, path, query string
		port              int
	}{
		{"a.example.com", "/", "", 0},
		{"a.example.com:8080", "/x/y", "q=1", 8443},
		{"[::1]:80", "/p", "", 443},
		{"::1", "/", "", 8443},
		{"UPPER.example.com.", "/%2F", "a=%20", 0},
	} {
		f.Add(s.host, s.path, s.query, s.port)
	}
	f.Fuzz(func(t *testing.T, host, path, query string, port int) {
		if !httpguts.ValidHostHeader(host) || port < 0 || port > 65535 {
			t.Skip()
		}
		uri := (&url.URL{Path: path, RawQuery: query}).RequestURI()
		loc := redirectLocation(host, uri, port)
		if !strings.HasPrefix(loc, "https://") || !strings.HasSuffix(loc, uri) {
			t.Fatalf("Location %q for host %q uri %q", loc, host, uri)
		}
	})
}
