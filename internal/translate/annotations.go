package translate

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Ingress annotations meshgate reads (reference: docs/annotations.md).
const (
	AnnotationPrefix         = "meshgate.io/"
	AnnotationBackendProto   = "meshgate.io/backend-protocol"
	AnnotationSSLRedirect    = "meshgate.io/ssl-redirect"
	AnnotationSSLPassthrough = "meshgate.io/ssl-passthrough"
	AnnotationConnectTimeout = "meshgate.io/proxy-connect-timeout"
	AnnotationReadTimeout    = "meshgate.io/proxy-read-timeout"
	AnnotationBodySize       = "meshgate.io/proxy-body-size"
	AnnotationTLSPolicy      = "meshgate.io/tls-policy"

	// Session affinity (ingress-nginx's set, under our prefix).
	AnnotationAffinity       = "meshgate.io/affinity"
	AnnotationCookieName     = "meshgate.io/session-cookie-name"
	AnnotationCookieMaxAge   = "meshgate.io/session-cookie-max-age"
	AnnotationCookiePath     = "meshgate.io/session-cookie-path"
	AnnotationCookieSameSite = "meshgate.io/session-cookie-samesite"
	AnnotationCookieSecure   = "meshgate.io/session-cookie-secure"

	// Request limits (ingress-nginx's limit-* set, cluster-wide rates).
	AnnotationLimitRPS       = "meshgate.io/limit-rps"
	AnnotationLimitRPM       = "meshgate.io/limit-rpm"
	AnnotationLimitBurst     = "meshgate.io/limit-burst-multiplier"
	AnnotationLimitConns     = "meshgate.io/limit-connections"
	AnnotationLimitKey       = "meshgate.io/limit-key"
	AnnotationLimitAllowlist = "meshgate.io/limit-allowlist"
)

// DefaultAffinityCookie is the affinity cookie's name when
// meshgate.io/session-cookie-name is not set.
const DefaultAffinityCookie = "MESHGATE_AFFINITY"

// MaxCookieMaxAge bounds meshgate.io/session-cookie-max-age (one year).
const MaxCookieMaxAge = 365 * 24 * time.Hour

// Limits on annotation values.
const (
	// MaxTimeout bounds the timeout annotations.
	MaxTimeout = 24 * time.Hour
	// MaxBodySize bounds meshgate.io/proxy-body-size (1 TiB).
	MaxBodySize = int64(1) << 40
)

// annotations is the parsed form of an Ingress' meshgate.io annotations.
// Zero fields mean "not set".
type annotations struct {
	protocol       routing.Protocol
	sslRedirect    *bool
	passthrough    bool
	connectTimeout time.Duration
	readTimeout    time.Duration
	maxBodyBytes   int64
	tlsPolicy      string
	affinity       string // "cookie", "learn" or ""
	cookie         routing.CookieAffinity
	cookieSet      []string // the session-cookie-* annotations given
	limit          routing.RequestLimit
	limitSet       []string // the limit option annotations given (burst, key, allowlist)
}

// parseAnnotations parses every meshgate.io/ annotation of an Ingress. An
// invalid or unknown one yields an error (naming the annotation) and leaves
// its field at the default; the others still apply. Errors come in
// annotation-name order.
func parseAnnotations(m map[string]string) (annotations, []error) {
	var a annotations
	var errs []error
	names := make([]string, 0, len(m))
	for k := range m {
		if strings.HasPrefix(k, AnnotationPrefix) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		if err := a.set(k, m[k]); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s=%q: %w", k, m[k], err))
		}
	}
	switch a.affinity {
	case "cookie":
		if a.cookie.Name == "" {
			a.cookie.Name = DefaultAffinityCookie
		}
	case "learn":
		errs = append(errs, a.learnProblems()...)
	default:
		for _, k := range a.cookieSet {
			errs = append(errs, fmt.Errorf("annotation %s: ignored without %s: cookie or learn", k, AnnotationAffinity))
		}
		a.cookie = routing.CookieAffinity{}
	}
	errs = append(errs, a.finishLimit()...)
	return a, errs
}

// learnProblems checks the session-cookie-* set of affinity: learn: the
// name (of the backend's cookie) is required, max-age is the sessions'
// timeout, and the attributes of a cookie of ours do not apply. Without a
// valid name there is no affinity.
func (a *annotations) learnProblems() []error {
	var errs []error
	for _, k := range a.cookieSet {
		switch k {
		case AnnotationCookiePath, AnnotationCookieSameSite, AnnotationCookieSecure:
			errs = append(errs, fmt.Errorf("annotation %s: ignored with %s: learn (the backend sets its cookie's attributes)", k, AnnotationAffinity))
		}
	}
	if a.cookie.Name == "" {
		errs = append(errs, fmt.Errorf("annotation %s: learn needs %s, the name of the backend's session cookie; no affinity", AnnotationAffinity, AnnotationCookieName))
		a.affinity = ""
	}
	return errs
}

// affinityOf is the cookie affinity the annotations ask for (zero: none).
func (a *annotations) affinityOf() routing.CookieAffinity {
	if a.affinity != "cookie" {
		return routing.CookieAffinity{}
	}
	return a.cookie
}

// learnOf is the sticky learn the annotations ask for (zero: none).
func (a *annotations) learnOf() routing.LearnAffinity {
	if a.affinity != "learn" {
		return routing.LearnAffinity{}
	}
	return routing.LearnAffinity{Cookie: a.cookie.Name, Timeout: a.cookie.MaxAge}
}

func (a *annotations) set(k, v string) error {
	var err error
	switch k {
	case AnnotationBackendProto:
		a.protocol, err = parseProtocol(v)
	case AnnotationSSLRedirect:
		var b bool
		if b, err = parseBool(v); err == nil {
			a.sslRedirect = &b
		}
	case AnnotationSSLPassthrough:
		a.passthrough, err = parseBool(v)
	case AnnotationConnectTimeout:
		a.connectTimeout, err = parseTimeout(v)
	case AnnotationReadTimeout:
		a.readTimeout, err = parseTimeout(v)
	case AnnotationBodySize:
		a.maxBodyBytes, err = parseSize(v)
	case AnnotationTLSPolicy:
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			err = fmt.Errorf("not a TLSPolicy name: %s", strings.Join(msgs, "; "))
		} else {
			a.tlsPolicy = v
		}
	case AnnotationAffinity:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "cookie":
			a.affinity = "cookie"
		case "learn":
			a.affinity = "learn"
		default:
			err = errors.New(`want "cookie" or "learn"`)
		}
	case AnnotationLimitRPS, AnnotationLimitRPM, AnnotationLimitBurst, AnnotationLimitConns,
		AnnotationLimitKey, AnnotationLimitAllowlist:
		err = a.setLimit(k, strings.TrimSpace(v))
	case AnnotationCookieName, AnnotationCookieMaxAge, AnnotationCookiePath, AnnotationCookieSameSite, AnnotationCookieSecure:
		a.cookieSet = append(a.cookieSet, k)
		err = a.setCookie(k, strings.TrimSpace(v))
	default:
		err = errors.New("unknown meshgate.io annotation")
	}
	return err
}

// setCookie parses one session-cookie-* annotation into a.cookie.
func (a *annotations) setCookie(k, v string) error {
	c := &a.cookie
	switch k {
	case AnnotationCookieName:
		if v == "" || len(v) > 128 || strings.IndexFunc(v, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
			return errors.New("want a cookie name: 1..128 token characters (RFC 6265)")
		}
		c.Name = v
	case AnnotationCookieMaxAge:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n > int64(MaxCookieMaxAge/time.Second) {
			return fmt.Errorf("want whole seconds, 1..%d", int64(MaxCookieMaxAge/time.Second))
		}
		c.MaxAge = time.Duration(n) * time.Second
	case AnnotationCookiePath:
		if !strings.HasPrefix(v, "/") || len(v) > 1024 || strings.IndexFunc(v, func(r rune) bool { return r < 0x21 || r > 0x7e || r == ';' }) >= 0 {
			return errors.New("want a path starting with / without spaces, controls or ';'")
		}
		c.Path = v
	case AnnotationCookieSameSite:
		switch strings.ToLower(v) {
		case "lax":
			c.SameSite = "Lax"
		case "strict":
			c.SameSite = "Strict"
		case "none":
			c.SameSite = "None"
		default:
			return errors.New("want Lax, Strict or None")
		}
	case AnnotationCookieSecure:
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		c.Secure = b
	}
	return nil
}

// isTokenChar reports whether r may appear in an RFC 7230 token.
func isTokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

func parseProtocol(v string) (routing.Protocol, error) {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "HTTP":
		return routing.ProtocolHTTP, nil
	case "HTTPS":
		return routing.ProtocolHTTPS, nil
	case "H2C":
		return routing.ProtocolH2C, nil
	case "GRPC":
		return routing.ProtocolGRPC, nil
	}
	return "", errors.New("want HTTP, HTTPS, H2C or GRPC")
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New(`want "true" or "false"`)
}

// parseTimeout accepts a Go duration ("30s", "1m30s") or whole seconds
// ("30"); the result is in (0, MaxTimeout].
func parseTimeout(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, errors.New(`want a duration ("30s", "2m") or whole seconds ("30")`)
	}
	if d <= 0 || d > MaxTimeout {
		return 0, fmt.Errorf("must be more than 0 and at most %v", MaxTimeout)
	}
	return d, nil
}

// parseSize accepts bytes ("1048576") or a number with a k, m or g suffix
// (powers of 1024, case-insensitive: "100k", "8m", "1g"); the result is in
// (0, MaxBodySize].
func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	mult := int64(1)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			v = v[:n-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New(`want a positive size in bytes or with a k, m or g suffix ("8m")`)
	}
	if n > math.MaxInt64/mult || n*mult > MaxBodySize {
		return 0, fmt.Errorf("must be at most %d bytes", MaxBodySize)
	}
	return n * mult, nil
}
