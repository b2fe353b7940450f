// Package routing defines the immutable routing table that the control plane
// (Kubernetes reconcilers or standalone manifests) builds and the data plane
// serves from.
//
// A *Table is never modified after it is handed to a Holder: every field,
// map and slice reachable from it is read-only from then on, so listeners may
// read it from any goroutine without locks. A change in the cluster produces
// a whole new Table that replaces the old one atomically (see Holder).
package routing

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"time"
)

// Table is one immutable snapshot of everything the data plane serves.
type Table struct {
	// Generation increases by one with every table a builder produces in
	// one process. It is informational (metrics, logs, status).
	Generation uint64

	// BuiltAt is when the builder produced this table.
	BuiltAt time.Time

	// HTTP holds the virtual hosts for terminated HTTP/HTTPS traffic.
	HTTP HTTPRoutes

	// TLS selects certificates and TLS policies by SNI.
	TLS TLSHosts

	// Passthrough maps lowercased SNI names (exact, or "*.suffix" for a
	// one-label wildcard) to backends that terminate TLS themselves. The TLS
	// listener routes such connections at L4 without terminating them.
	Passthrough map[string]*Backend

	// PassthroughSuffixes maps the suffix of a Gateway API wildcard
	// passthrough name (a TLSRoute hostname) to its backend: "*.com" is
	// stored under "com" and matches any name ending in ".com"
	// ("a.com", "a.example.com"), the longest matching suffix winning.
	// Passthrough is consulted first, so a Gateway wildcard is stored in
	// both (its one-label case there). May be nil.
	PassthroughSuffixes map[string]*Backend

	// Terminated maps lowercased SNI names (exact, or "*.suffix" for a
	// one-label wildcard) of TLS listeners in mode Terminate to the TCP
	// backends of their TLSRoutes: the TLS listener completes the
	// handshake with the name's TLSHost (so the session mesh and its
	// TLSPolicy apply as for HTTPS) and proxies the decrypted byte stream
	// to the backend instead of serving HTTP. TerminatedSuffixes holds the
	// Gateway API wildcards as PassthroughSuffixes does. Either may be nil.
	Terminated         map[string]*Backend
	TerminatedSuffixes map[string]*Backend

	// L4 lists the plain TCP and UDP services exposed on their own ports,
	// sorted by Addr, Protocol then Port. It holds the services of every
	// frontend: each says which address it binds.
	L4 []L4Service

	// Frontends holds the Gateways served on addresses of their own
	// (per-Gateway addresses), keyed by the address and port the data
	// plane binds for them: one entry per port that a Gateway's HTTP,
	// HTTPS or TLS listeners use. Each is a table of its own: HTTP, TLS and
	// Passthrough of that Gateway's listeners on that port only, nothing
	// of Ingresses, of other Gateways or of the Gateway's other ports, so
	// a request or handshake arriving on one address and port is routed
	// by those listeners alone. Its Kind says which server the port runs.
	// A frontend table's Generation and BuiltAt are its parent's; its L4
	// and Frontends are empty. Nil or empty means every Gateway is merged
	// into this table (served on the replica's own listeners).
	Frontends map[netip.AddrPort]*Table

	// Kind is the server a frontend table's port runs (FrontendHTTP or
	// FrontendTLS); unset on the root table, whose listeners the data
	// plane's own configuration names.
	Kind FrontendKind
}

// FrontendKind is the server a Gateway frontend's port runs.
type FrontendKind uint8

const (
	// FrontendHTTP serves plain HTTP (Gateway HTTP listeners).
	FrontendHTTP FrontendKind = iota + 1
	// FrontendTLS serves TLS: terminated by the table's TLS hosts (HTTPS
	// listeners) or passed through by its Passthrough names (TLS
	// listeners), on one port.
	FrontendTLS
)

// String names the kind as listeners and metrics do ("http", "https").
func (k FrontendKind) String() string {
	switch k {
	case FrontendHTTP:
		return "http"
	case FrontendTLS:
		return "https"
	}
	return "unset"
}

// emptyTable is what For returns for an address the table does not serve.
var emptyTable = &Table{}

// For returns the table that connections accepted on frontend address a
// are routed by: t itself for the zero AddrPort (the replica's own
// listeners), t.Frontends[a] for a frontend, and an empty table (serving
// nothing) for any other address, e.g. a listener whose Gateway was just
// removed. It does not allocate.
func (t *Table) For(a netip.AddrPort) *Table {
	if !a.IsValid() || t == nil {
		return t
	}
	if f := t.Frontends[a]; f != nil {
		return f
	}
	return emptyTable
}

// HTTPRoutes is the host → path → backend part of a Table.
type HTTPRoutes struct {
	// Hosts maps a lowercased exact host name (no port) to its virtual host.
	Hosts map[string]*VirtualHost

	// Wildcards maps the suffix of a one-label wildcard host to its virtual
	// host: "*.example.com" is stored under "example.com" and matches
	// "a.example.com" but neither "example.com" nor "a.b.example.com".
	Wildcards map[string]*VirtualHost

	// Suffixes maps the suffix of a Gateway API wildcard host to its
	// virtual host: "*.example.com" under "example.com" matches any name
	// ending in ".example.com" ("a.example.com", "a.b.example.com"). The
	// longest matching suffix wins; Wildcards is consulted first for the
	// one-label case, so a Gateway API wildcard is stored in both.
	Suffixes map[string]*VirtualHost

	// CatchAll holds the rules of Ingresses that name no host; it matches
	// any host that neither Hosts nor Wildcards match. May be nil.
	CatchAll *VirtualHost

	// DefaultBackend receives requests no rule matches (the Ingress
	// spec.defaultBackend of our class). Nil means answer 404.
	DefaultBackend *Backend
}

// VirtualHost is the merged set of rules for one host across all Ingresses.
type VirtualHost struct {
	// Name is the host as written in the Ingress ("a.example.com",
	// "*.example.com", or "" for the catch-all).
	Name string

	// TLS reports that an Ingress lists this host under spec.tls, so plain
	// HTTP requests for it are redirected to HTTPS unless SSLRedirect is
	// false.
	TLS bool

	// SSLRedirect is true when plain-HTTP requests must be redirected to
	// HTTPS (TLS host and no annotation disabling it).
	SSLRedirect bool

	// Routes are sorted by precedence: every Exact route before every Prefix
	// or ImplementationSpecific route; within a kind, longer paths first;
	// ties broken by Ingress namespace/name then path, so the order is
	// deterministic. The first route that matches a request wins.
	Routes []Route
}

// PathType mirrors networking.k8s.io/v1 PathType.
type PathType uint8

const (
	// PathExact matches the URL path exactly, case-sensitively.
	PathExact PathType = iota
	// PathPrefix matches element-wise on "/"-separated path elements:
	// "/foo" matches "/foo", "/foo/" and "/foo/bar" but not "/foobar".
	PathPrefix
	// PathImplementationSpecific is treated as PathPrefix by meshgate.
	PathImplementationSpecific
	// PathRegex matches Route.PathRegex (RE2) against the path (Gateway
	// API RegularExpression path matches and GRPCRoute method matches).
	PathRegex
)

// Route is one path rule of a virtual host: an Ingress path, or one match
// of a Gateway API rule. Every condition must hold for a request to match.
type Route struct {
	PathType PathType
	// Path is the path as written in the Ingress. For prefix routes a
	// trailing "/" is ignored when matching ("/foo/" ≡ "/foo"); "/" matches
	// every path. For PathRegex it is the expression's source.
	Path string
	// PathRegex is the compiled Path of a PathRegex route, else nil.
	PathRegex *regexp.Regexp

	// Scope limits the listeners serving the route; zero (ScopeAll)
	// serves both.
	Scope Scope
	// Method, when not empty, must equal the request method.
	Method string
	// Headers and Query must all match; nil matches any request.
	Headers []ValueMatch
	Query   []ValueMatch

	// Backend is the single backend of an Ingress rule. When nil, the
	// route is a Gateway API rule: Backends are picked by weight (see
	// Pick), and no backend at all means 500 unless Filters redirect.
	Backend  *Backend
	Backends []WeightedBackend
	// Filters apply to every request of the route; may be nil.
	Filters *Filters
	// Timeouts bound the request; zero fields mean none.
	Timeouts Timeouts
	// Limit, when set, limits the requests of each client (the
	// meshgate.io/limit-* annotations of an Ingress); every route of one
	// Ingress shares one. Nil: no limit.
	Limit *RequestLimit

	// Source names the object the rule came from, "namespace/name"
	// (Ingress) or "Kind namespace/name" (Gateway API routes).
	Source string
	// Order breaks ties between routes of equal precedence: lower first.
	// Ingress routes use 0; Gateway API routes number their matches by
	// route age, name, rule and match index, from 1.
	Order int
}

// Protocol is the protocol spoken to a backend.
type Protocol string

const (
	ProtocolHTTP  Protocol = "http"
	ProtocolHTTPS Protocol = "https"
	ProtocolH2C   Protocol = "h2c"
	ProtocolGRPC  Protocol = "grpc"
)

// Backend is a resolved Service port with its ready endpoints.
type Backend struct {
	// Name identifies the backend in metrics and logs:
	// "namespace/service:port".
	Name string

	// Endpoints are the ready addresses ("ip:port", IPv6 in brackets),
	// sorted. Empty means the Service has no ready endpoint (503).
	Endpoints []string

	// Protocol spoken upstream; empty means ProtocolHTTP.
	Protocol Protocol

	// Timeouts and limits; zero means the data plane default.
	ConnectTimeout  time.Duration
	ResponseTimeout time.Duration
	MaxBodyBytes    int64

	// ProxyProtocol, when non-zero (1 or 2), makes the L4 proxy send a
	// PROXY protocol header of that version to the backend.
	ProxyProtocol int

	// TLS, when set, makes the HTTP proxy speak TLS to the endpoints and
	// verify them (a Gateway API BackendTLSPolicy). nil with ProtocolHTTPS
	// encrypts without verifying (the Ingress default).
	TLS *UpstreamTLS

	// Affinity, when set, pins each client to one endpoint with a cookie
	// (meshgate.io/affinity: cookie); nil balances every request.
	Affinity *CookieAffinity

	// Learn, when set, pins each session of the backend's own session
	// cookie to the endpoint that set it (meshgate.io/affinity: learn);
	// nil learns nothing. A backend has Affinity or Learn, not both.
	Learn *LearnAffinity
}

// LearnAffinity is sticky learn: when a response sets the backend's
// session cookie, the proxy records value → endpoint in the cluster's
// replicated sticky table, and routes requests carrying that value to that
// endpoint on every replica while it is in the backend. Comparable, like
// CookieAffinity.
type LearnAffinity struct {
	// Cookie is the name of the cookie the backend sets (JSESSIONID, say);
	// an RFC 6265 token, required.
	Cookie string
	// Timeout is how long a learned session is kept after it was learned
	// or last used (refreshed at most once per half Timeout); zero means
	// the data plane's default.
	Timeout time.Duration
}

// CookieAffinity is cookie-based session affinity: the proxy sets a cookie
// naming the endpoint it chose, under a MAC with a key every replica of
// the cluster shares, and routes requests carrying a valid one to that
// endpoint while it is in the backend. Comparable: it is part of what
// makes two references to a Service distinct backends.
type CookieAffinity struct {
	// Name is the cookie's name (an RFC 6265 token); required.
	Name string
	// MaxAge is the cookie's Max-Age; zero makes a session cookie.
	MaxAge time.Duration
	// Path is the cookie's Path; "" means "/".
	Path string
	// SameSite is "", "Lax", "Strict" or "None".
	SameSite string
	// Secure adds the Secure attribute.
	Secure bool
	// SecureOnTLS adds Secure to cookies set on requests that came over
	// TLS only, so that a rule served on plain HTTP and HTTPS pins on both.
	SecureOnTLS bool

	// Scope, when not empty, enters the MAC: a value made for one scope
	// never routes in another, even to the same backend and endpoint.
	// Gateway API rules use it so that each rule's sessions are its own.
	Scope string
	// Lifetime, when non-zero, bounds the session: the value carries its
	// expiry under the MAC and is ignored after it, whatever the client
	// keeps (Gateway API absoluteTimeout). A value whose session is still
	// running is not set again, so the lifetime is absolute, not idle.
	Lifetime time.Duration
	// Header, when set, carries the value in a request and response header
	// named Name instead of a cookie (Gateway API session persistence of
	// type Header): the response names the endpoint in that header and the
	// client sends it back. MaxAge, Path, SameSite and Secure are unused.
	Header bool
}

// RequestLimit limits the requests of each client of the routes that
// share it. Rates are cluster-wide (the replicas exchange their counts
// over the session mesh); Connections is per replica.
type RequestLimit struct {
	// Name identifies the limit on every replica: "namespace/name" of the
	// Ingress. Counts are exchanged under it, so it must be the same on
	// every replica and distinct between limits. Required.
	Name string
	// RPS and RPM are the requests per second and per minute one client
	// may make; zero: no such limit. With both, both apply.
	RPS, RPM uint32
	// BurstMultiplier (≥ 1; 0 means 1) is how many seconds' (minutes')
	// worth of requests an idle client may make at once: the counting
	// window is BurstMultiplier seconds (minutes) long and admits
	// RPS × BurstMultiplier (RPM × BurstMultiplier) in it.
	BurstMultiplier uint32
	// Connections bounds the requests of one client in flight at once on
	// one replica (HTTP/1.1 connections, HTTP/2 streams); zero: none.
	Connections uint32
	// Header, when set, is the canonical name of the request field whose
	// value keys a client; a request without it is keyed by its client
	// address. "" keys by client address (the PROXY protocol source when
	// the listener trusts the sender).
	Header string
	// Allow lists the client addresses that are never limited.
	Allow []netip.Prefix
}

// UpstreamTLS is how the proxy verifies a backend's TLS server.
type UpstreamTLS struct {
	// Key identifies the configuration (policy, generation, CA content):
	// two values with the same Key are the same configuration, so the
	// proxy keeps pooled connections across tables.
	Key string
	// ServerName is sent as SNI, and is the name the certificate must
	// carry unless SubjectAltNames is set.
	ServerName string
	// RootCAs verify the certificate chain; nil means the system roots.
	RootCAs *x509.CertPool
	// DNSNames and URIs, when either is set, replace ServerName in
	// verification: the certificate must carry one of them.
	DNSNames []string
	URIs     []string
}

// TLSHosts selects a certificate and policy by SNI.
type TLSHosts struct {
	// Exact maps lowercased host names to their TLS host.
	Exact map[string]*TLSHost
	// Wildcards maps the suffix of "*.suffix" names (see HTTPRoutes).
	Wildcards map[string]*TLSHost
	// Default serves clients that send no SNI or an unknown name. It may be
	// nil, in which case such handshakes fail.
	Default *TLSHost
}

// TLSHost is what the TLS listener needs for one SNI name.
type TLSHost struct {
	// Name is the SNI pattern ("a.example.com", "*.example.com", or "" for
	// the default).
	Name string
	// Certificate is the parsed serving certificate, Leaf set.
	Certificate *tls.Certificate
	// Policy is the effective TLS policy; never nil (DefaultPolicy when no
	// TLSPolicy selects the host).
	Policy *TLSPolicy
	// Stream marks a host whose connections carry a TLSRoute's byte
	// stream (Table.Terminated), not HTTP: its handshakes offer no ALPN
	// protocol.
	Stream bool
}

// SessionMode selects how TLS sessions are resumed.
type SessionMode string

const (
	// SessionStateful keeps session state in the cluster-wide session store;
	// clients only hold an opaque id (the default).
	SessionStateful SessionMode = "Stateful"
	// SessionTicketKeys issues stateless tickets encrypted with
	// cluster-wide, rotated ticket keys.
	SessionTicketKeys SessionMode = "TicketKeys"
	// SessionOff disables resumption.
	SessionOff SessionMode = "Off"
)

// TLSPolicy is the resolved form of a meshgate.io/v1alpha1 TLSPolicy.
type TLSPolicy struct {
	// Name is "namespace/name" of the TLSPolicy, or "" for the built-in
	// default.
	Name string
	// Generation is the TLSPolicy's metadata.generation (0 in standalone
	// mode: manifests carry none). Sessions are bound to Name and TLSDigest,
	// the policy's content, not to Generation.
	Generation int64

	MinVersion       uint16        // tls.VersionTLS12 by default
	MaxVersion       uint16        // tls.VersionTLS13 by default
	CipherSuites     []uint16      // TLS 1.2 suites; nil means Go's defaults
	CurvePreferences []tls.CurveID // nil means DefaultCurves

	SessionMode       SessionMode
	SessionLifetime   time.Duration // 300 s by default, like nginx
	TicketKeyRotation time.Duration // TicketKeys mode: 1 h by default
	Allow0RTT         bool          // HTTP/3 early data
}

// SameTLS reports whether p and q make the same demands of a client
// connection: versions, TLS 1.2 suites, curves, session mode and 0-RTT.
// Lifetimes and ticket-key rotation are left out: they bound how long a
// session lives, not what a connection must be (a session's lifetime is
// checked against its host's current policy when it resumes). A request
// may be served on a connection negotiated for another host only when
// their policies are the same in this sense (connection coalescing); the
// session layer's binding of a session to its policy uses the same fields
// (see tlsconfig.SessionHost). nil is the default policy.
func (p *TLSPolicy) SameTLS(q *TLSPolicy) bool {
	if p == q {
		return true
	}
	if p == nil {
		p = defaultPolicy
	}
	if q == nil {
		q = defaultPolicy
	}
	return orDefault(p.MinVersion, tls.VersionTLS12) == orDefault(q.MinVersion, tls.VersionTLS12) &&
		orDefault(p.MaxVersion, tls.VersionTLS13) == orDefault(q.MaxVersion, tls.VersionTLS13) &&
		slices.Equal(p.CipherSuites, q.CipherSuites) && slices.Equal(p.curves(), q.curves()) &&
		orDefault(p.SessionMode, SessionStateful) == orDefault(q.SessionMode, SessionStateful) &&
		p.Allow0RTT == q.Allow0RTT
}

// TLSDigest is a digest of what SameTLS compares: equal for policies
// that are the same in its sense. Sessions are bound to it, so changing a
// policy's versions, suites, curves, mode or 0-RTT ends its sessions,
// whether or not its generation moved. nil is the default policy.
func (p *TLSPolicy) TLSDigest() string {
	if p == nil {
		p = defaultPolicy
	}
	d := sha256.New()
	fmt.Fprintf(d, "min=%d max=%d suites=%v curves=%v mode=%q 0rtt=%v",
		orDefault(p.MinVersion, tls.VersionTLS12), orDefault(p.MaxVersion, tls.VersionTLS13),
		p.CipherSuites, p.curves(), orDefault(p.SessionMode, SessionStateful), p.Allow0RTT)
	return string(d.Sum(nil))
}

// curves returns the policy's curves, DefaultCurves when unset.
func (p *TLSPolicy) curves() []tls.CurveID {
	if p.CurvePreferences == nil {
		return DefaultCurves
	}
	return p.CurvePreferences
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// defaultPolicy is what SameTLS compares a nil policy as (read-only).
var defaultPolicy = DefaultPolicy()

// DefaultCurves is meshgate's default set of key-exchange groups. Go's
// crypto/tls ignores the order of CurvePreferences and prefers the hybrid
// post-quantum X25519MLKEM768 whenever the client offers it, so this is a set:
// the hybrid is on by default (it protects recorded traffic, resumed TLS 1.3
// connections included, against a later break of X25519) at about 25 % more
// server CPU per TLS 1.3 handshake. A TLSPolicy whose curves leave it out
// turns it off. See docs/tlspolicy.md.
var DefaultCurves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}

// DefaultPolicy returns the policy used for hosts no TLSPolicy selects.
func DefaultPolicy() *TLSPolicy {
	return &TLSPolicy{
		MinVersion:        tls.VersionTLS12,
		MaxVersion:        tls.VersionTLS13,
		CurvePreferences:  DefaultCurves,
		SessionMode:       SessionStateful,
		SessionLifetime:   300 * time.Second,
		TicketKeyRotation: time.Hour,
	}
}

// L4Protocol is TCP or UDP.
type L4Protocol string

const (
	L4TCP L4Protocol = "TCP"
	L4UDP L4Protocol = "UDP"
)

// L4Service is a port of meshgate forwarded as-is to a backend.
type L4Service struct {
	// Addr is the address the port binds: the zero Addr means the data
	// plane's own L4 address (l4.ManagerConfig.BindIP); a frontend's
	// services (Table.Frontends) carry the frontend's address.
	Addr     netip.Addr
	Protocol L4Protocol
	// Port is meshgate's listening port.
	Port    int
	Backend *Backend
	// IdleTimeout closes idle TCP connections / UDP flows; zero means the
	// data plane default.
	IdleTimeout time.Duration
	// Source names the object it came from ("namespace/name").
	Source string
}
