package translate

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/meshgate/meshgate/internal/routing"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// caCertKey is the ConfigMap key holding a BackendTLSPolicy's CA bundle.
const caCertKey = "ca.crt"

// btlsTarget is a Service (and optionally one port, by name) a
// BackendTLSPolicy targets.
type btlsTarget struct {
	ns, svc, section string
}

// btlsBuild is a converted BackendTLSPolicy.
type btlsBuild struct {
	p        *gatewayv1.BackendTLSPolicy
	tls      *routing.UpstreamTLS // nil when invalid
	accepted routeCondition       // reasons are PolicyConditionReasons
	resolved routeCondition
	targets  []btlsTarget
}

// processBackendTLSPolicies converts every BackendTLSPolicy, oldest (then
// by name) first; for a target claimed twice the younger is Conflicted.
func processBackendTLSPolicies(s *state) {
	s.gw.btls = map[btlsTarget]*btlsBuild{}
	s.gw.btlsUsers = map[types.NamespacedName]map[*gatewayBuild]bool{}
	pols := slices.Clone(s.c.BackendTLSPolicies())
	slices.SortStableFunc(pols, func(a, b *gatewayv1.BackendTLSPolicy) int { return compareAge(a, b) })
	for _, p := range pols {
		bb := s.convertBackendTLS(p)
		s.gw.btlsAll = append(s.gw.btlsAll, bb)
		for _, t := range bb.targets {
			if prev := s.gw.btls[t]; prev != nil {
				bb.accepted = routeCondition{reason: gatewayv1.RouteConditionReason(gatewayv1.PolicyReasonConflicted),
					msg: fmt.Sprintf("BackendTLSPolicy %s already applies to Service %s", nsName(prev.p), t.svc)}
				continue
			}
			if bb.accepted.ok {
				s.gw.btls[t] = bb
			}
		}
	}
}

func (s *state) convertBackendTLS(p *gatewayv1.BackendTLSPolicy) *btlsBuild {
	bb := &btlsBuild{p: p,
		accepted: routeCondition{ok: true, reason: gatewayv1.RouteConditionReason(gatewayv1.PolicyReasonAccepted), msg: "applies to the targeted Services"},
		resolved: routeCondition{ok: true, reason: gatewayv1.RouteConditionReason(gatewayv1.BackendTLSPolicyReasonResolvedRefs), msg: "CA certificates resolved"},
	}
	for _, ref := range p.Spec.TargetRefs {
		if ref.Group != "" || ref.Kind != "Service" {
			continue // not a target meshgate applies policies to
		}
		t := btlsTarget{ns: p.Namespace, svc: string(ref.Name)}
		if ref.SectionName != nil {
			t.section = string(*ref.SectionName)
		}
		bb.targets = append(bb.targets, t)
	}
	v := p.Spec.Validation
	up := &routing.UpstreamTLS{ServerName: string(v.Hostname)}
	for _, san := range v.SubjectAltNames {
		switch san.Type {
		case gatewayv1.HostnameSubjectAltNameType:
			up.DNSNames = append(up.DNSNames, string(san.Hostname))
		case gatewayv1.URISubjectAltNameType:
			up.URIs = append(up.URIs, string(san.URI))
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s/%d/%s/%v/%v", nsName(p), p.Generation, up.ServerName, up.DNSNames, up.URIs)
	switch {
	case v.WellKnownCACertificates != nil && *v.WellKnownCACertificates == gatewayv1.WellKnownCACertificatesSystem:
		fmt.Fprint(h, "|system")
	case v.WellKnownCACertificates != nil:
		bb.invalid(gatewayv1.PolicyReasonInvalid, gatewayv1.BackendTLSPolicyReasonInvalidKind, fmt.Sprintf("wellKnownCACertificates %q is not supported (System is)", *v.WellKnownCACertificates))
	default:
		pool := x509.NewCertPool()
		n := 0
		for _, ref := range v.CACertificateRefs {
			pem, reason, msg := s.caBundle(p.Namespace, ref)
			if pem == nil {
				bb.resolved.refProblem(gatewayv1.RouteConditionReason(reason), msg)
				continue
			}
			if !pool.AppendCertsFromPEM(pem) {
				bb.resolved.refProblem(gatewayv1.RouteConditionReason(gatewayv1.BackendTLSPolicyReasonInvalidCACertificateRef), fmt.Sprintf("ConfigMap %s/%s: %s holds no PEM certificate", p.Namespace, ref.Name, caCertKey))
				continue
			}
			h.Write(pem)
			n++
		}
		if n == 0 {
			bb.accepted = routeCondition{reason: gatewayv1.RouteConditionReason(gatewayv1.BackendTLSPolicyReasonNoValidCACertificate), msg: "no valid CA certificate: backends it targets are not used (5xx)"}
			bb.tls = nil
			return bb
		}
		up.RootCAs = pool
	}
	if !bb.accepted.ok {
		return bb
	}
	up.Key = hex.EncodeToString(h.Sum(nil))
	bb.tls = up
	return bb
}

func (bb *btlsBuild) invalid(acc gatewayv1.PolicyConditionReason, res gatewayv1.PolicyConditionReason, msg string) {
	bb.accepted = routeCondition{reason: gatewayv1.RouteConditionReason(acc), msg: msg}
	bb.resolved = routeCondition{reason: gatewayv1.RouteConditionReason(res), msg: msg}
}

// caBundle returns the PEM of a caCertificateRef (a ConfigMap key ca.crt).
func (s *state) caBundle(ns string, ref gatewayv1.LocalObjectReference) ([]byte, gatewayv1.PolicyConditionReason, string) {
	if ref.Group != "" || ref.Kind != "ConfigMap" {
		return nil, gatewayv1.BackendTLSPolicyReasonInvalidKind, fmt.Sprintf("caCertificateRef %s/%s %s: only ConfigMaps are supported", ref.Group, ref.Kind, ref.Name)
	}
	cm, err := s.c.LookupConfigMap(ns, string(ref.Name))
	if err != nil {
		return nil, gatewayv1.BackendTLSPolicyReasonInvalidCACertificateRef, err.Error()
	}
	v, ok := cm.Data[caCertKey]
	if !ok || v == "" {
		return nil, gatewayv1.BackendTLSPolicyReasonInvalidCACertificateRef, fmt.Sprintf("ConfigMap %s/%s has no %s", ns, ref.Name, caCertKey)
	}
	return []byte(v), "", ""
}

// backendTLSFor returns the BackendTLSPolicy for port of Service ns/svc
// (one naming the port wins over one naming the whole Service), nil when
// none targets it; used reports that a policy targets it at all (an
// invalid one yields used with a nil policy: the backend is not used).
// The Gateways of the route being converted become the policy's ancestors.
func (s *state) backendTLSFor(ns, svc string, port corev1.ServicePort) (bb *btlsBuild, used bool) {
	if s.gw.btls == nil {
		return nil, false
	}
	bb = s.gw.btls[btlsTarget{ns: ns, svc: svc, section: port.Name}]
	if bb == nil {
		bb = s.gw.btls[btlsTarget{ns: ns, svc: svc}]
	}
	nn := types.NamespacedName{Namespace: ns, Name: svc}
	for _, pr := range s.gw.curParents {
		if pr.accepted {
			if s.gw.btlsUsers[nn] == nil {
				s.gw.btlsUsers[nn] = map[*gatewayBuild]bool{}
			}
			s.gw.btlsUsers[nn][pr.gw] = true
		}
	}
	if bb == nil {
		// An invalid policy (not in btls) still keeps the Service from
		// being used in the clear.
		for _, b := range s.gw.btlsAll {
			if slices.ContainsFunc(b.targets, func(t btlsTarget) bool {
				return t.ns == ns && t.svc == svc && (t.section == "" || t.section == port.Name)
			}) {
				return nil, true
			}
		}
		return nil, false
	}
	return bb, true
}

// finishBackendTLS writes the ancestors of every BackendTLSPolicy: the
// Gateways whose routes send to a Service it targets.
func finishBackendTLS(s *state) {
	for _, bb := range s.gw.btlsAll {
		gws := map[*gatewayBuild]bool{}
		for _, t := range bb.targets {
			for gb := range s.gw.btlsUsers[types.NamespacedName{Namespace: t.ns, Name: t.svc}] {
				gws[gb] = true
			}
		}
		list := make([]*gatewayBuild, 0, len(gws))
		for gb := range gws {
			list = append(list, gb)
		}
		slices.SortFunc(list, func(a, b *gatewayBuild) int { return compareKeys(a.gw, b.gw) })
		var anc []gatewayv1.PolicyAncestorStatus
		for _, gb := range list {
			ns := gatewayv1.Namespace(gb.gw.Namespace)
			anc = append(anc, gatewayv1.PolicyAncestorStatus{
				AncestorRef:    gatewayv1.ParentReference{Group: ptrTo(gatewayv1.Group(gatewayGroup)), Kind: ptrTo(gatewayv1.Kind("Gateway")), Namespace: &ns, Name: gatewayv1.ObjectName(gb.gw.Name)},
				ControllerName: gatewayv1.GatewayController(s.opts.GatewayControllerName),
				Conditions: []metav1.Condition{
					cond(gatewayv1.PolicyConditionAccepted, bb.accepted.ok, bb.accepted.reason, bb.accepted.msg, bb.p.Generation),
					cond(gatewayv1.BackendTLSPolicyConditionResolvedRefs, bb.resolved.ok, bb.resolved.reason, bb.resolved.msg, bb.p.Generation),
				},
			})
		}
		if !bb.accepted.ok {
			s.problem("BackendTLSPolicy", bb.p, string(bb.accepted.reason), "%s", bb.accepted.msg)
		}
		s.gw.status.BackendTLSPolicies[key(bb.p)] = anc
	}
}

func ptrTo[T any](v T) *T { return &v }
