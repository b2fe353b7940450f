package translate

import (
	"errors"
	"fmt"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
)

// Bounds of the limit annotations.
const (
	// MaxLimitRPS bounds meshgate.io/limit-rps and limit-connections.
	MaxLimitRPS = 1_000_000
	// MaxLimitRPM bounds meshgate.io/limit-rpm.
	MaxLimitRPM = 60 * MaxLimitRPS
	// MaxBurstMultiplier bounds meshgate.io/limit-burst-multiplier (the
	// counting window is that many seconds or minutes long).
	MaxBurstMultiplier = 60
	// DefaultBurstMultiplier is ingress-nginx's default.
	DefaultBurstMultiplier = 5
	// maxAllowlist bounds the entries of meshgate.io/limit-allowlist.
	maxAllowlist = 1024
)

// setLimit parses one limit annotation into a.limit.
func (a *annotations) setLimit(k, v string) error {
	l := &a.limit
	switch k {
	case AnnotationLimitRPS:
		return parseCount(v, MaxLimitRPS, &l.RPS)
	case AnnotationLimitRPM:
		return parseCount(v, MaxLimitRPM, &l.RPM)
	case AnnotationLimitConns:
		return parseCount(v, MaxLimitRPS, &l.Connections)
	}
	var err error
	switch k {
	case AnnotationLimitBurst:
		err = parseCount(v, MaxBurstMultiplier, &l.BurstMultiplier)
	case AnnotationLimitKey:
		var h string
		if h, err = parseLimitKey(v); err == nil {
			l.Header = h
		}
	default: // AnnotationLimitAllowlist
		var p []netip.Prefix
		if p, err = parsePrefixes(v); err == nil {
			l.Allow = p
		}
	}
	if err == nil { // an invalid one is reported once, not also as ignored
		a.limitSet = append(a.limitSet, k)
	}
	return err
}

// finishLimit reports limit options given without a limit and fills in
// the defaults of a limit.
func (a *annotations) finishLimit() []error {
	l := &a.limit
	if l.RPS == 0 && l.RPM == 0 && l.Connections == 0 {
		var errs []error
		for _, k := range a.limitSet {
			errs = append(errs, fmt.Errorf("annotation %s: ignored without %s, %s or %s", k, AnnotationLimitRPS, AnnotationLimitRPM, AnnotationLimitConns))
		}
		*l = routing.RequestLimit{}
		return errs
	}
	if l.BurstMultiplier == 0 {
		l.BurstMultiplier = DefaultBurstMultiplier
	}
	return nil
}

// limitOf is the request limit of the Ingress ns/name the annotations ask
// for (nil: none).
func (a *annotations) limitOf(ns, name string) *routing.RequestLimit {
	if a.limit.RPS == 0 && a.limit.RPM == 0 && a.limit.Connections == 0 {
		return nil
	}
	l := a.limit
	l.Name = ns + "/" + name
	return &l
}

// parseCount parses a whole number in 1..max into *dst.
func parseCount(v string, max uint64, dst *uint32) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > max {
		return fmt.Errorf("want a whole number, 1..%d", max)
	}
	*dst = uint32(n)
	return nil
}

// parseLimitKey accepts "client-address" (the default) or
// "header:<Name>" and returns the canonical header name ("" for the
// client address).
func parseLimitKey(v string) (string, error) {
	if strings.EqualFold(v, "client-address") {
		return "", nil
	}
	name, ok := strings.CutPrefix(v, "header:")
	name = strings.TrimSpace(name)
	if !ok || name == "" || len(name) > 128 || strings.IndexFunc(name, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
		return "", errors.New(`want "client-address" or "header:<Name>" with a header name of 1..128 token characters`)
	}
	return textproto.CanonicalMIMEHeaderKey(name), nil
}

// parsePrefixes parses a comma-separated list of CIDRs and addresses
// (an address is its full-length prefix); host bits are cleared.
func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if len(out) == maxAllowlist {
			return nil, fmt.Errorf("at most %d entries", maxAllowlist)
		}
		var p netip.Prefix
		if strings.Contains(f, "/") {
			var err error
			if p, err = netip.ParsePrefix(f); err != nil {
				return nil, fmt.Errorf("%q is not a CIDR", f)
			}
		} else {
			ad, err := netip.ParseAddr(f)
			if err != nil || ad.Zone() != "" {
				return nil, fmt.Errorf("%q is not an address", f)
			}
			p = netip.PrefixFrom(ad, ad.BitLen())
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%q: an IPv4-mapped prefix shorter than /96", f)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, errors.New("want a comma-separated list of CIDRs or addresses")
	}
	return out, nil
}
