package translate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshgate/meshgate/api/v1alpha1"
	"github.com/meshgate/meshgate/internal/routing"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// policyResult is a converted TLSPolicy: policy is nil when err is set.
type policyResult struct {
	src      *v1alpha1.TLSPolicy
	policy   *routing.TLSPolicy
	selector labels.Selector // nil: selects no Ingress
	err      error
}

// convertPolicies converts every TLSPolicy; invalid ones become Problems
// and select nothing (their hosts get the default policy).
func convertPolicies(s *state) {
	for _, p := range s.c.TLSPolicies() {
		r := policyResult{src: p}
		r.policy, r.err = ConvertTLSPolicy(p)
		if r.err == nil && p.Spec.IngressSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.IngressSelector)
			if err != nil {
				r.err = fmt.Errorf("spec.ingressSelector: %w", err)
			} else {
				r.selector = sel
			}
		}
		if r.err != nil {
			r.policy = nil
			s.problem("TLSPolicy", p, ReasonInvalidPolicy, "%v; hosts it selects use the default policy", r.err)
		}
		s.policies[key(p)] = r
		if r.err == nil {
			s.nsPolicies[p.Namespace] = append(s.nsPolicies[p.Namespace], r)
		}
	}
}

var curveNames = map[string]tls.CurveID{
	"X25519":         tls.X25519,
	"X25519MLKEM768": tls.X25519MLKEM768,
	"P-256":          tls.CurveP256,
	"P-384":          tls.CurveP384,
	"P-521":          tls.CurveP521,
}

// ConvertTLSPolicy resolves a TLSPolicy's spec into a routing.TLSPolicy
// named "namespace/name" with the object's generation. Empty fields take
// the defaults of routing.DefaultPolicy (an empty session mode is
// Stateful). It fails on unknown versions, cipher suites (only the secure
// suites of tls.CipherSuites are accepted), curves or modes, on
// MinVersion > MaxVersion and on non-positive durations.
func ConvertTLSPolicy(p *v1alpha1.TLSPolicy) (*routing.TLSPolicy, error) {
	out := routing.DefaultPolicy()
	out.Name = nsName(p)
	out.Generation = p.Generation
	spec := &p.Spec
	var err error
	if spec.MinVersion != "" {
		if out.MinVersion, err = parseVersion(spec.MinVersion); err != nil {
			return nil, fmt.Errorf("spec.minVersion: %w", err)
		}
	}
	if spec.MaxVersion != "" {
		if out.MaxVersion, err = parseVersion(spec.MaxVersion); err != nil {
			return nil, fmt.Errorf("spec.maxVersion: %w", err)
		}
	}
	if out.MinVersion > out.MaxVersion {
		return nil, errors.New("spec.minVersion is above spec.maxVersion")
	}
	if out.CipherSuites, err = parseCiphers(spec.CipherSuites); err != nil {
		return nil, fmt.Errorf("spec.cipherSuites: %w", err)
	}
	if len(spec.Curves) > 0 {
		out.CurvePreferences = make([]tls.CurveID, 0, len(spec.Curves))
		for _, name := range spec.Curves {
			id, ok := curveNames[name]
			if !ok {
				return nil, fmt.Errorf("spec.curves: unknown curve %q (want X25519, X25519MLKEM768, P-256, P-384 or P-521)", name)
			}
			out.CurvePreferences = append(out.CurvePreferences, id)
		}
	}
	if err := convertResumption(&spec.SessionResumption, out); err != nil {
		return nil, fmt.Errorf("spec.sessionResumption: %w", err)
	}
	out.Allow0RTT = spec.EarlyData
	return out, nil
}

func parseVersion(v string) (uint16, error) {
	switch v {
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unknown TLS version %q (want 1.2 or 1.3)", v)
}

func parseCiphers(names []string) ([]uint16, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make([]uint16, 0, len(names))
	for _, name := range names {
		id, ok := uint16(0), false
		for _, cs := range tls.CipherSuites() {
			if cs.Name == name {
				id, ok = cs.ID, true
				break
			}
		}
		if !ok {
			return nil, fmt.Errorf("unknown or insecure cipher suite %q", name)
		}
		if !isTLS12Suite(id) {
			return nil, fmt.Errorf("%q is a TLS 1.3 suite, which is not configurable", name)
		}
		out = append(out, id)
	}
	return out, nil
}

func isTLS12Suite(id uint16) bool {
	for _, cs := range tls.CipherSuites() {
		if cs.ID == id {
			for _, v := range cs.SupportedVersions {
				if v == tls.VersionTLS12 {
					return true
				}
			}
		}
	}
	return false
}

func convertResumption(r *v1alpha1.SessionResumption, out *routing.TLSPolicy) error {
	switch r.Mode {
	case "", v1alpha1.SessionResumptionStateful:
		out.SessionMode = routing.SessionStateful
	case v1alpha1.SessionResumptionTicketKeys:
		out.SessionMode = routing.SessionTicketKeys
	case v1alpha1.SessionResumptionOff:
		out.SessionMode = routing.SessionOff
	default:
		return fmt.Errorf("unknown mode %q (want Stateful, TicketKeys or Off)", r.Mode)
	}
	if r.Lifetime != nil {
		if r.Lifetime.Duration <= 0 {
			return errors.New("lifetime must be positive")
		}
		out.SessionLifetime = r.Lifetime.Duration
	}
	if r.TicketKeyRotation != nil {
		if r.TicketKeyRotation.Duration < time.Minute {
			return errors.New("ticketKeyRotation must be at least 1m")
		}
		out.TicketKeyRotation = r.TicketKeyRotation.Duration
	}
	return nil
}

// policyFor returns the policy for TLS host host of ing: the policy the
// meshgate.io/tls-policy annotation names (default policy and a Problem
// if it cannot be used), else a valid policy of the namespace listing the
// host in spec.hosts (exact name before wildcard, then by policy name),
// else one whose spec.ingressSelector selects ing, else the default.
func (s *state) policyFor(ing *networkingv1.Ingress, host string) *routing.TLSPolicy {
	if name := s.annots[key(ing)].tlsPolicy; name != "" {
		r, ok := s.policies[types.NamespacedName{Namespace: ing.Namespace, Name: name}]
		switch {
		case !ok:
			s.ingressProblem(ing, ReasonPolicyNotFound, "TLSPolicy %q not found in namespace %s; using the default policy", name, ing.Namespace)
			return s.defaultPolicy
		case r.err != nil:
			s.ingressProblem(ing, ReasonInvalidPolicy, "TLSPolicy %q is invalid; using the default policy", name)
			return s.defaultPolicy
		}
		return r.policy
	}
	var wildcard, selected *routing.TLSPolicy
	// nsPolicies holds the valid policies sorted by name, so the first hit
	// wins deterministically.
	for _, r := range s.nsPolicies[ing.Namespace] {
		for _, h := range r.src.Spec.Hosts {
			h = strings.ToLower(h)
			if h == host {
				return r.policy
			}
			if wildcard == nil && isWildcard(h) && wildcardCovers(h, host) {
				wildcard = r.policy
			}
		}
		if selected == nil && r.selector != nil && r.selector.Matches(labels.Set(ing.Labels)) {
			selected = r.policy
		}
	}
	switch {
	case wildcard != nil:
		return wildcard
	case selected != nil:
		return selected
	}
	return s.defaultPolicy
}

// wildcardCovers reports whether the pattern "*.suffix" matches host by one
// label.
func wildcardCovers(pattern, host string) bool {
	i := strings.IndexByte(host, '.')
	return i > 0 && host[i+1:] == pattern[2:]
}
