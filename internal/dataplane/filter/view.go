package filter

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// HTTPRequest is the routing.Request view of a net/http request. The zero
// value is not usable; set R. It parses the query once, on first use.
type HTTPRequest struct {
	R      *http.Request
	query  url.Values
	parsed bool
}

// Method implements routing.Request.
func (v *HTTPRequest) Method() string { return v.R.Method }

// Path implements routing.Request.
func (v *HTTPRequest) Path() string { return v.R.URL.Path }

// Header implements routing.Request.
func (v *HTTPRequest) Header(name string) (string, bool) { return HTTPHeader(v.R.Header).Get(name) }

// Query implements routing.Request.
func (v *HTTPRequest) Query(name string) (string, bool) {
	if !v.parsed {
		v.query, v.parsed = v.R.URL.Query(), true
	}
	vs, ok := v.query[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// ExchangeRequest is the routing.Request view of an exchange.Request. The
// zero value is not usable; set R.
type ExchangeRequest struct {
	R *exchange.Request
}

// Method implements routing.Request.
func (v ExchangeRequest) Method() string { return v.R.Method }

// Path implements routing.Request.
func (v ExchangeRequest) Path() string { return v.R.Path }

// Header implements routing.Request: the value of the field named name,
// repeated fields joined with "," as routing.Request says (allocating only
// then). "Host" is the request's authority, which the exchange keeps out of
// its fields.
func (v ExchangeRequest) Header(name string) (string, bool) {
	if exchange.EqualFold(name, "Host") {
		return v.R.Host, true
	}
	h := &v.R.Header
	val, ok := h.Get(name)
	if !ok || h.Count(name) == 1 {
		return val, ok
	}
	var b strings.Builder
	for _, f := range h.Fields() {
		if exchange.EqualFold(f.Name, name) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(f.Value)
		}
	}
	return b.String(), true
}

// Query implements routing.Request by scanning the target's query; it
// allocates only to unescape a name or value that is percent-encoded.
func (v ExchangeRequest) Query(name string) (string, bool) {
	_, q, ok := strings.Cut(v.R.Target, "?")
	if !ok {
		return "", false
	}
	return QueryValue(q, name)
}

// QueryValue returns the first value of name in the raw query q
// ("a=1&b=2"), unescaped; ok is false when absent.
func QueryValue(q, name string) (string, bool) {
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" {
			continue
		}
		k, val, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			if u, err := url.QueryUnescape(k); err == nil {
				k = u
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(val, "%+") {
			if u, err := url.QueryUnescape(val); err == nil {
				val = u
			}
		}
		return val, true
	}
	return "", false
}
