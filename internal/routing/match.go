package routing

// This file holds the lookups the data plane runs per request and per
// handshake. None of them allocates: host names are normalised into a
// fixed-size buffer on the stack and maps are indexed with string(bytes)
// conversions, which the compiler performs without copying.

// maxHostLen bounds the host names the lookups normalise. DNS names are at
// most 253 characters; longer names cannot match an exact or wildcard entry
// and fall through to the catch-all / default entry.
const maxHostLen = 255

// hostBuf holds a normalised host name at offset 2; the two leading bytes
// let wildcardKey write "*." in front of a suffix in place.
type hostBuf [maxHostLen + 2]byte

// normalizeHost lowercases host, strips a port (":8443", also after a
// bracketed IPv6 literal) and one trailing dot, writes the result into
// buf[2:] and returns it. ok is false when the result is empty or longer
// than maxHostLen.
func normalizeHost(buf *hostBuf, host string) (name []byte, ok bool) {
	host = stripPort(host)
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) == 0 || len(host) > maxHostLen {
		return nil, false
	}
	out := buf[2 : 2+len(host)]
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out, true
}

// stripPort removes a ":port" suffix. "[::1]:8443" and "[::1]" become
// "::1"; a bare IPv6 literal (more than one colon, no brackets) is kept.
func stripPort(host string) string {
	if len(host) > 0 && host[0] == '[' {
		for i := 1; i < len(host); i++ {
			if host[i] == ']' {
				return host[1:i]
			}
		}
		return host
	}
	colon := -1
	for i := 0; i < len(host); i++ {
		if host[i] == ':' {
			if colon >= 0 {
				return host // bare IPv6 literal
			}
			colon = i
		}
	}
	if colon >= 0 {
		return host[:colon]
	}
	return host
}

// wildcardSuffix returns the part of name after its first label, or ok
// false when name has a single label or an empty first label.
func wildcardSuffix(name []byte) (suffix []byte, ok bool) {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if i == 0 || i == len(name)-1 {
				return nil, false
			}
			return name[i+1:], true
		}
	}
	return nil, false
}

// Lookup returns the virtual host serving host: the exact entry, else the
// one-label wildcard entry, else CatchAll (which may be nil). host may carry
// a port and a trailing dot and is matched case-insensitively. Lookup does
// not allocate and is safe for concurrent use on a published Table.
func (r *HTTPRoutes) Lookup(host string) *VirtualHost {
	var buf hostBuf
	if name, ok := normalizeHost(&buf, host); ok {
		if vh := r.Hosts[string(name)]; vh != nil {
			return vh
		}
		if suffix, ok := wildcardSuffix(name); ok {
			if vh := r.Wildcards[string(suffix)]; vh != nil {
				return vh
			}
			if vh := r.deepWildcard(suffix); vh != nil {
				return vh
			}
		}
	}
	return r.CatchAll
}

// deepWildcard returns the Suffixes entry for the longest suffix of name
// that has one, looking at name's proper label suffixes only (name itself
// was tried as a one-label wildcard already).
func (r *HTTPRoutes) deepWildcard(name []byte) *VirtualHost {
	if len(r.Suffixes) == 0 {
		return nil
	}
	for {
		suffix, ok := wildcardSuffix(name)
		if !ok {
			return nil
		}
		if vh := r.Suffixes[string(suffix)]; vh != nil {
			return vh
		}
		name = suffix
	}
}

// Match returns the route for host and path and the virtual host it was
// looked up in. path is the request's URL path (no query). When the chosen
// virtual host has no matching route (or no virtual host was found), route
// is nil and the caller uses DefaultBackend (see Backend). vh is nil when no
// virtual host matched at all. Match does not allocate.
func (r *HTTPRoutes) Match(host, path string) (route *Route, vh *VirtualHost) {
	vh = r.Lookup(host)
	if vh == nil {
		return nil, nil
	}
	return vh.Match(path), vh
}

// Backend returns the backend serving host and path: the matched route's
// backend, else DefaultBackend. backend is nil when the request must be
// answered 404. vh is returned so the caller can apply SSLRedirect.
func (r *HTTPRoutes) Backend(host, path string) (backend *Backend, vh *VirtualHost) {
	route, vh := r.Match(host, path)
	if route != nil {
		return route.Backend, vh
	}
	return r.DefaultBackend, vh
}

// Match returns the first route of vh matching path, or nil. Routes are
// pre-sorted by precedence, so the first match is the best one. Match does
// not allocate.
func (vh *VirtualHost) Match(path string) *Route {
	for i := range vh.Routes {
		if vh.Routes[i].Matches(path) {
			return &vh.Routes[i]
		}
	}
	return nil
}

// Matches reports whether path satisfies the route. Exact routes compare
// byte for byte; prefix (and implementation-specific) routes compare whole
// "/"-separated elements, ignoring one trailing "/" of the route's path.
// A route with a Scope or with method, header or query conditions never
// matches a bare path: use MatchesRequest.
func (rt *Route) Matches(path string) bool {
	return rt.Scope == ScopeAll && !rt.hasConditions() && rt.matchesPath(path)
}

// PrefixMatch reports whether path matches the Prefix route path prefix
// element-wise: "/foo" and "/foo/" both match "/foo", "/foo/" and
// "/foo/bar" but not "/foobar"; "/" and "" match every path.
func PrefixMatch(prefix, path string) bool {
	if n := len(prefix); n > 0 && prefix[n-1] == '/' {
		prefix = prefix[:n-1]
	}
	if len(prefix) == 0 {
		return true
	}
	if len(path) < len(prefix) || path[:len(prefix)] != prefix {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// Lookup returns the TLS host for an SNI name: the exact entry, else the
// one-label wildcard entry, else Default (which may be nil). sni is matched
// case-insensitively, a trailing dot ignored. Lookup does not allocate.
func (h *TLSHosts) Lookup(sni string) *TLSHost {
	var buf hostBuf
	if name, ok := normalizeHost(&buf, sni); ok {
		if th := h.Exact[string(name)]; th != nil {
			return th
		}
		if suffix, ok := wildcardSuffix(name); ok {
			if th := h.Wildcards[string(suffix)]; th != nil {
				return th
			}
		}
	}
	return h.Default
}

// PassthroughFor returns the backend that takes TLS connections for sni
// without termination: the exact entry of Passthrough, else its "*.suffix"
// entry, else the longest matching entry of PassthroughSuffixes; nil when
// the connection is to be terminated. It does not allocate.
func (t *Table) PassthroughFor(sni string) *Backend {
	return sniLookup(t.Passthrough, t.PassthroughSuffixes, sni)
}

// TerminatedFor returns the TCP backend that takes the decrypted stream
// of TLS connections for sni (a TLS listener in mode Terminate), matched
// as PassthroughFor matches, in Terminated and TerminatedSuffixes; nil
// when the connection carries HTTP. It does not allocate.
func (t *Table) TerminatedFor(sni string) *Backend {
	return sniLookup(t.Terminated, t.TerminatedSuffixes, sni)
}

// sniLookup is PassthroughFor's match on the maps given.
func sniLookup(exact, suffixes map[string]*Backend, sni string) *Backend {
	if len(exact) == 0 {
		return nil
	}
	if b := oneLabelLookup(exact, sni); b != nil || len(suffixes) == 0 {
		return b
	}
	var buf hostBuf
	name, ok := normalizeHost(&buf, sni)
	if !ok {
		return nil
	}
	for i := 1; i < len(name)-1; i++ { // longest suffix first
		if name[i] == '.' {
			if b := suffixes[string(name[i+1:])]; b != nil {
				return b
			}
		}
	}
	return nil
}

// oneLabelLookup is sniLookup without the suffixes.
func oneLabelLookup(exact map[string]*Backend, sni string) *Backend {
	var buf hostBuf
	name, ok := normalizeHost(&buf, sni)
	if !ok {
		return nil
	}
	if b := exact[string(name)]; b != nil {
		return b
	}
	suffix, ok := wildcardSuffix(name)
	if !ok {
		return nil
	}
	// suffix starts at buf[2+k] with k ≥ 2 (first label and its dot), so
	// the two bytes before it belong to the first label: overwrite them.
	start := 2 + len(name) - len(suffix)
	buf[start-2], buf[start-1] = '*', '.'
	return exact[string(buf[start-2:2+len(name)])]
}
