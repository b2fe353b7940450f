package routing

import (
	"regexp"
	"strings"
	"time"
)

// This file holds the per-route request features Gateway API HTTPRoutes and
// GRPCRoutes need (and Ingress annotations may reuse): matches on method,
// headers and query parameters, weighted backends, filters and timeouts.
// They are plain data; the data plane executes them (see
// internal/dataplane/filter).

// Request is what route matching reads of an HTTP request, whatever front
// end (HTTP/1.1, HTTP/2, HTTP/3) received it. Implementations must not
// allocate in these methods on the common path; they are called only by the
// request's own goroutine.
type Request interface {
	// Method is the request method, as sent ("GET").
	Method() string
	// Path is the URL path, without the query.
	Path() string
	// Header returns the value of the header named name (any case), its
	// repeated values joined with ","; ok is false when it is absent.
	Header(name string) (value string, ok bool)
	// Query returns the first value of the query parameter named name
	// (case-sensitive); ok is false when it is absent.
	Query(name string) (value string, ok bool)
}

// Scope says which of meshgate's front ends serve a route.
type Scope uint8

const (
	// ScopeAll serves the route on the plain-HTTP and the TLS listeners
	// (Ingress rules).
	ScopeAll Scope = iota
	// ScopePlain serves it on the plain-HTTP listener only (a Gateway HTTP
	// listener).
	ScopePlain
	// ScopeTLS serves it on the TLS listener only (a Gateway HTTPS
	// listener).
	ScopeTLS
)

// Allows reports whether a request received over TLS (tls true) or plain
// HTTP may use a route of scope s.
func (s Scope) Allows(tls bool) bool {
	switch s {
	case ScopePlain:
		return !tls
	case ScopeTLS:
		return tls
	}
	return true
}

// MatchType says how a header or query parameter value is compared.
type MatchType uint8

const (
	// MatchExact compares byte for byte.
	MatchExact MatchType = iota
	// MatchRegex matches Regex (RE2 syntax, unanchored as written).
	MatchRegex
)

// ValueMatch is one header or query parameter condition of a route.
type ValueMatch struct {
	// Name is the header (canonical form irrelevant: compared
	// case-insensitively) or query parameter (case-sensitive) name.
	Name  string
	Type  MatchType
	Value string
	// Regex is the compiled Value of a MatchRegex condition.
	Regex *regexp.Regexp
}

func (m *ValueMatch) matches(v string) bool {
	if m.Type == MatchRegex {
		return m.Regex.MatchString(v)
	}
	return v == m.Value
}

// WeightedBackend is one backendRef of a Gateway API rule.
type WeightedBackend struct {
	// Backend is nil when the reference could not be resolved (unknown
	// kind, missing Service, not permitted): requests picked for it are
	// answered 500, as the Gateway API requires.
	Backend *Backend
	// Weight is the relative share of requests; 0 takes none.
	Weight uint32
	// Filters apply to requests sent to this backend only; may be nil.
	Filters *Filters
}

// Header is one header name and value of a modifier.
type Header struct {
	Name, Value string
}

// HeaderModifier edits request or response headers: Remove first, then
// Set (replace every value), then Add (append a value). Names compare
// case-insensitively.
type HeaderModifier struct {
	Set    []Header
	Add    []Header
	Remove []string
}

// PathModifierType says how a redirect or rewrite changes the path.
type PathModifierType uint8

const (
	// ReplaceFullPath replaces the whole path with Value.
	ReplaceFullPath PathModifierType = iota + 1
	// ReplacePrefixMatch replaces the route's matched prefix with Value.
	ReplacePrefixMatch
)

// PathModifier changes the request path.
type PathModifier struct {
	Type  PathModifierType
	Value string
}

// Redirect answers the request with a redirect instead of proxying it.
// Empty fields keep the request's value.
type Redirect struct {
	// Scheme is "http", "https" or "" (the request's).
	Scheme string
	// Hostname replaces the host; "" keeps it.
	Hostname string
	Path     *PathModifier
	// Port is the port in Location; 0 derives it as the Gateway API
	// says: the scheme's well-known port if Scheme is set, else
	// ListenerPort. A well-known port of the resulting scheme is omitted.
	Port int
	// ListenerPort is the Gateway listener port the route is served on.
	ListenerPort int
	// StatusCode is 301, 302, 303, 307 or 308 (0 means 302).
	StatusCode int
}

// Rewrite changes the request before it is proxied.
type Rewrite struct {
	// Hostname replaces the Host header; "" keeps it.
	Hostname string
	Path     *PathModifier
}

// Mirror sends a copy of a share of the requests to another backend and
// discards its response.
type Mirror struct {
	Backend *Backend
	// PerMillion is the share of requests mirrored, 0 to 1,000,000.
	PerMillion uint32
}

// Filters are the per-route (or per-backend) request processing steps, in
// the order the data plane applies them: Redirect (which ends the
// request), RequestHeaders, Rewrite, Mirrors, then ResponseHeaders on the
// way back. A nil *Filters does nothing.
type Filters struct {
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Redirect        *Redirect
	Rewrite         *Rewrite
	Mirrors         []Mirror
}

// Timeouts bound a Gateway API request; zero means no route-level bound.
type Timeouts struct {
	// Request bounds the whole request, from receipt of its headers to
	// the end of the response headers (504 beyond).
	Request time.Duration
	// BackendRequest bounds each request to a backend until its response
	// headers (504 beyond).
	BackendRequest time.Duration
}

// hasConditions reports whether the route matches on more than its path
// and scope.
func (rt *Route) hasConditions() bool {
	return rt.Method != "" || len(rt.Headers) > 0 || len(rt.Query) > 0
}

// MatchesRequest reports whether req, received over TLS or not, satisfies
// every condition of the route: scope, path, method, headers and query
// parameters. It does not allocate beyond what req's methods do.
func (rt *Route) MatchesRequest(req Request, tls bool) bool {
	if !rt.Scope.Allows(tls) || !rt.matchesPath(req.Path()) {
		return false
	}
	if rt.Method != "" && req.Method() != rt.Method {
		return false
	}
	for i := range rt.Headers {
		v, ok := req.Header(rt.Headers[i].Name)
		if !ok || !rt.Headers[i].matches(v) {
			return false
		}
	}
	for i := range rt.Query {
		v, ok := req.Query(rt.Query[i].Name)
		if !ok || !rt.Query[i].matches(v) {
			return false
		}
	}
	return true
}

func (rt *Route) matchesPath(path string) bool {
	switch rt.PathType {
	case PathExact:
		return path == rt.Path
	case PathRegex:
		return rt.PathRegex.MatchString(path)
	}
	return PrefixMatch(rt.Path, path)
}

// MatchRequest returns the first route of vh that req satisfies, or nil.
func (vh *VirtualHost) MatchRequest(req Request, tls bool) *Route {
	for i := range vh.Routes {
		if vh.Routes[i].MatchesRequest(req, tls) {
			return &vh.Routes[i]
		}
	}
	return nil
}

// Route returns the route for req sent to host over TLS or not, and the
// virtual host it was looked up in (nil when none matched). route is nil
// when the virtual host has no route for req; the caller then uses
// DefaultBackend.
func (r *HTTPRoutes) Route(host string, req Request, tls bool) (route *Route, vh *VirtualHost) {
	vh = r.Lookup(host)
	if vh == nil {
		return nil, nil
	}
	return vh.MatchRequest(req, tls), vh
}

// Pick chooses the backend for one request to rt: the Ingress Backend if
// set, else one of Backends by weight, using n (a uniformly random number)
// to choose. It returns the backend's filters too. ok is false when the
// request must be answered 500: the chosen reference is unresolved, every
// weight is zero, or the route has no backend at all. Pick does not
// allocate.
func (rt *Route) Pick(n uint32) (b *Backend, f *Filters, ok bool) {
	if rt.Backend != nil {
		return rt.Backend, nil, true
	}
	var total uint64
	for i := range rt.Backends {
		total += uint64(rt.Backends[i].Weight)
	}
	if total == 0 {
		return nil, nil, false
	}
	x := uint64(n) % total
	for i := range rt.Backends {
		w := uint64(rt.Backends[i].Weight)
		if x < w {
			wb := &rt.Backends[i]
			return wb.Backend, wb.Filters, wb.Backend != nil
		}
		x -= w
	}
	return nil, nil, false // unreachable: x < total
}

// ReplacePath applies m to path for a route whose matched prefix is prefix
// (used by ReplacePrefixMatch). The result keeps exactly one "/" between
// the replacement and the rest of the path.
func ReplacePath(m *PathModifier, prefix, path string) string {
	if m == nil {
		return path
	}
	if m.Type == ReplaceFullPath {
		return m.Value
	}
	p := strings.TrimSuffix(prefix, "/")
	rest := path
	if len(path) >= len(p) && path[:len(p)] == p {
		rest = path[len(p):]
	}
	repl := strings.TrimSuffix(m.Value, "/")
	switch {
	case rest == "" && repl == "":
		return "/"
	case rest == "":
		return repl
	}
	return repl + rest
}

// EachBackend calls fn for every backend a route may send to: its
// Backend, its weighted Backends and the mirrors of its filters and of its
// backends' filters. Unresolved (nil) backends are skipped.
func (rt *Route) EachBackend(fn func(*Backend)) {
	if rt.Backend != nil {
		fn(rt.Backend)
	}
	rt.Filters.eachMirror(fn)
	for i := range rt.Backends {
		if b := rt.Backends[i].Backend; b != nil {
			fn(b)
		}
		rt.Backends[i].Filters.eachMirror(fn)
	}
}

func (f *Filters) eachMirror(fn func(*Backend)) {
	if f == nil {
		return
	}
	for _, m := range f.Mirrors {
		if m.Backend != nil {
			fn(m.Backend)
		}
	}
}
