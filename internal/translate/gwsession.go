package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Gateway API session persistence (GEP-1619, a rule's sessionPersistence)
// maps onto the cookie affinity of Ingress (routing.CookieAffinity): every
// backend of the rule carries the same affinity, scoped to the rule so
// that its sessions are its own even when another rule (or an Ingress)
// uses the same Service. The data plane keeps a session on its backend
// across the rule's weighted backends.
//
//   - type Cookie (the default): a cookie named sessionName (default: a
//     name derived from the route and rule, the same on every replica),
//     HttpOnly, SameSite=Lax, Secure when set over TLS; Path is the
//     rule's matched path (the longest literal prefix of a regular
//     expression; the common prefix of several matches); "/" for GRPCRoute.
//   - type Header: the endpoint is named in a response header sessionName,
//     which the client sends back in its requests.
//   - absoluteTimeout bounds the session on every replica (the expiry is
//     under the cookie's MAC), and with cookieConfig.lifetimeType
//     Permanent is also the cookie's Max-Age; a Session cookie has no
//     Max-Age or Expires.
//
// v1.6.3 has no idleTimeout and no BackendLBPolicy.

// sessionNameDefaultPrefix begins the generated session names.
const sessionNameDefaultPrefix = "gw-session-"

// tokenRE is an RFC 7230 token (a header name, and an RFC 6265 cookie name).
var tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// sessionAffinity converts rule i's sessionPersistence (nil: none) of a
// route of kind with the given cookie path. An unusable value rejects the
// route (UnsupportedValue) and returns the zero affinity.
func sessionAffinity(rb *routeBuild, sp *gatewayv1.SessionPersistence, i int, path, where string) routing.CookieAffinity {
	if sp == nil {
		return routing.CookieAffinity{}
	}
	where += ".sessionPersistence"
	scope := fmt.Sprintf("%s %s rule %d", rb.kind, nsName(rb.obj), i)
	a := routing.CookieAffinity{Scope: scope, Path: path, SameSite: "Lax", SecureOnTLS: true}
	if sp.Type != nil && *sp.Type == gatewayv1.HeaderBasedSessionPersistence {
		a = routing.CookieAffinity{Scope: scope, Header: true}
	} else if sp.Type != nil && *sp.Type != gatewayv1.CookieBasedSessionPersistence {
		rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s.type %q is not supported", where, *sp.Type)
		return routing.CookieAffinity{}
	}
	a.Name = defaultSessionName(rb.obj, rb.kind, i)
	if sp.SessionName != nil && *sp.SessionName != "" {
		a.Name = *sp.SessionName
		if !tokenRE.MatchString(a.Name) {
			rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s.sessionName %q is not a valid cookie or header name", where, a.Name)
			return routing.CookieAffinity{}
		}
	}
	life, err := parseGWDuration(sp.AbsoluteTimeout)
	if err == nil && sp.AbsoluteTimeout != nil && life < time.Second {
		err = fmt.Errorf("%q is shorter than a second", *sp.AbsoluteTimeout)
	}
	if err != nil {
		rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s.absoluteTimeout: %v", where, err)
		return routing.CookieAffinity{}
	}
	a.Lifetime = life.Truncate(time.Second)
	if cc := sp.CookieConfig; cc != nil && cc.LifetimeType != nil && *cc.LifetimeType == gatewayv1.PermanentCookieLifetimeType {
		if a.Header || a.Lifetime == 0 {
			rb.reject(gatewayv1.RouteReasonUnsupportedValue, "%s.cookieConfig.lifetimeType Permanent needs type Cookie and an absoluteTimeout", where)
			return routing.CookieAffinity{}
		}
		a.MaxAge = a.Lifetime
	}
	return a
}

// defaultSessionName is the session name of rule i of a route without a
// sessionName: unique per rule and the same on every replica.
func defaultSessionName(obj metav1.Object, kind string, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", kind, nsName(obj), i))
	return sessionNameDefaultPrefix + hex.EncodeToString(sum[:6])
}

// sessionPath is the cookie Path of an HTTPRoute rule with matches ms:
// the matched path, the literal prefix of a regular expression, and for
// several matches the longest path prefix they share (segment-wise).
func sessionPath(ms []gatewayv1.HTTPRouteMatch) string {
	if len(ms) == 0 {
		return "/"
	}
	var common []string
	for k, m := range ms {
		p := "/"
		if m.Path != nil && m.Path.Value != nil {
			p = *m.Path.Value
			if m.Path.Type != nil && *m.Path.Type == gatewayv1.PathMatchRegularExpression {
				p = regexLiteralDir(p)
			}
		}
		segs := strings.Split(strings.Trim(p, "/"), "/")
		if k == 0 {
			common = segs
			continue
		}
		n := 0
		for n < len(common) && n < len(segs) && common[n] == segs[n] {
			n++
		}
		common = common[:n]
	}
	out := "/" + strings.Join(common, "/")
	if !strings.HasPrefix(out, "/") || strings.ContainsAny(out, ";\x00\r\n") {
		return "/"
	}
	return out
}

// regexLiteralDir is the part of expression expr every matching path
// begins with, up to its last "/" ("^/p1/p2/.*/p3" → "/p1/p2/"). Regular
// expressions are matched unanchored (routing.PathRegex), so only one
// anchored with "^" has such a part; otherwise, and when unknown, "/".
func regexLiteralDir(expr string) string {
	rest, anchored := strings.CutPrefix(expr, "^")
	if !anchored {
		return "/"
	}
	re, err := regexp.Compile(rest)
	if err != nil {
		return "/"
	}
	lit, _ := re.LiteralPrefix()
	if !strings.HasPrefix(lit, "/") {
		return "/"
	}
	return lit[:strings.LastIndex(lit, "/")+1]
}
