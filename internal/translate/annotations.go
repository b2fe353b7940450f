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
)

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
	return a, errs
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
	default:
		err = errors.New("unknown meshgate.io annotation")
	}
	return err
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
