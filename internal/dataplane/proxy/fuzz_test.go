package proxy

import (
	"net/http"
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
		h := &Handler{cfg: Config{HTTPSPort: port}}
		r := &http.Request{Host: host, URL: &url.URL{Path: path, RawQuery: query}, Header: http.Header{}}
		w := &discardWriter{h: http.Header{}}
		if got := h.redirect(w, r); got != http.StatusPermanentRedirect {
			t.Fatalf("status %d", got)
		}
		loc := w.h.Get("Location")
		if !strings.HasPrefix(loc, "https://") || !strings.HasSuffix(loc, r.URL.RequestURI()) {
			t.Fatalf("Location %q for host %q uri %q", loc, host, r.URL.RequestURI())
		}
	})
}
