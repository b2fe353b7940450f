package translate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// tlsHostBuild is a TLS host being built. cert nil means "use the default
// certificate" (a spec.tls entry without secretName).
type tlsHostBuild struct {
	name   string
	cert   *tls.Certificate
	secret string // "namespace/name" or ""
	policy *routing.TLSPolicy
	owner  *networkingv1.Ingress
	// stream: a TLS listener in mode Terminate serves the name
	// (routing.TLSHost.Stream).
	stream bool
}

// tlsCandidate is the default certificate chosen so far.
type tlsCandidate struct {
	cert *tls.Certificate
}

// hostPattern lowercases an Ingress host and checks it is a DNS name or a
// one-label wildcard ("*.example.com"). "" (no host) is valid.
func hostPattern(h string) (string, error) {
	h = strings.ToLower(h)
	if h == "" {
		return "", nil
	}
	var msgs []string
	if strings.HasPrefix(h, "*") {
		msgs = validation.IsWildcardDNS1123Subdomain(h)
	} else {
		msgs = validation.IsDNS1123Subdomain(h)
	}
	if len(msgs) > 0 {
		return "", fmt.Errorf("invalid host %q: %s", h, strings.Join(msgs, "; "))
	}
	return h, nil
}

func secretReason(err error) string {
	if errors.Is(err, ErrNotFound) {
		return ReasonSecretNotFound
	}
	return ReasonInvalidCertificate
}

// processTLS turns spec.tls of our (non-passthrough) Ingresses into TLS
// hosts, oldest Ingress first: the first Ingress to claim a host keeps it.
func processTLS(s *state) {
	if ref := s.opts.DefaultCertificate; ref != "" {
		ns, name, _ := strings.Cut(ref, "/")
		cert, err := s.c.LookupTLSSecret(ns, name)
		if err != nil {
			s.problems = append(s.problems, Problem{Kind: "Secret", Namespace: ns, Name: name,
				Reason: secretReason(err), Message: fmt.Sprintf("default certificate: %v; using the first valid Ingress certificate instead", err)})
		} else {
			s.defaultCert, s.defaultFromOption = &tlsCandidate{cert: cert}, true
		}
	}
	for _, ing := range s.ingresses {
		if s.annots[key(ing)].passthrough {
			continue
		}
		for i, t := range ing.Spec.TLS {
			s.ingressTLS(ing, i, t)
		}
	}
	for name, th := range s.tlsHosts {
		if th.cert != nil {
			continue
		}
		if s.defaultCert == nil {
			s.ingressProblem(th.owner, ReasonSecretNotFound, "TLS host %q names no secretName and there is no default certificate; host skipped", name)
			delete(s.tlsHosts, name)
			continue
		}
		th.cert = s.defaultCert.cert
	}
}

func (s *state) ingressTLS(ing *networkingv1.Ingress, i int, t networkingv1.IngressTLS) {
	var cert *tls.Certificate
	var secret string
	if t.SecretName != "" {
		c, err := s.c.LookupTLSSecret(ing.Namespace, t.SecretName)
		if err != nil {
			s.ingressProblem(ing, secretReason(err), "spec.tls[%d]: %v; hosts %v skipped", i, err, t.Hosts)
			return
		}
		cert, secret = c, ing.Namespace+"/"+t.SecretName
		if s.defaultCert == nil {
			s.defaultCert = &tlsCandidate{cert: c}
		}
	}
	for _, h := range t.Hosts {
		host, err := hostPattern(h)
		if err == nil && host == "" {
			err = errors.New("empty host")
		}
		if err != nil {
			s.ingressProblem(ing, ReasonInvalidRule, "spec.tls[%d]: %v; skipped", i, err)
			continue
		}
		policy := s.policyFor(ing, host)
		if prev := s.tlsHosts[host]; prev != nil {
			if prev.secret != secret {
				s.ingressProblem(ing, ReasonConflict, "spec.tls[%d]: host %q already uses secret %q of Ingress %s; skipped", i, host, prev.secret, nsName(prev.owner))
			} else if prev.policy != policy {
				s.ingressProblem(ing, ReasonConflict, "spec.tls[%d]: host %q already uses TLS policy %q of Ingress %s", i, host, prev.policy.Name, nsName(prev.owner))
			}
			continue
		}
		s.tlsHosts[host] = &tlsHostBuild{name: host, cert: cert, secret: secret, policy: policy, owner: ing}
	}
}

// tlsCovered reports whether an Ingress' spec.tls covers host on
// meshgate's own addresses (see frontend.tlsCovered).
func (s *state) tlsCovered(host string) bool { return s.main.tlsCovered(host) }

// fillTLS writes the default TLS host of meshgate's own addresses into t
// (the TLS hosts come with frontend.fill).
func (s *state) fillTLS(t *routing.TLSHosts) {
	switch {
	case s.defaultCert != nil && s.defaultFromOption:
		t.Default = &routing.TLSHost{Certificate: s.defaultCert.cert, Policy: s.defaultPolicy}
	case s.main.gwDefaultCert != nil:
		t.Default = &routing.TLSHost{Certificate: s.main.gwDefaultCert, Policy: s.main.gwDefaultPolicy}
	case s.defaultCert != nil:
		t.Default = &routing.TLSHost{Certificate: s.defaultCert.cert, Policy: s.defaultPolicy}
	}
}
