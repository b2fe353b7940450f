package translate

import (
	"fmt"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
	networkingv1 "k8s.io/api/networking/v1"
)

// vhostBuild collects the routes of one host across Ingresses.
type vhostBuild struct {
	name   string
	routes []routing.Route
	// noRedirect: an Ingress with rules for this host set
	// meshgate.io/ssl-redirect: "false".
	noRedirect bool
	// gateway: a Gateway API route serves this host (a wildcard host then
	// matches names of any depth, see routing.HTTPRoutes.Suffixes).
	gateway bool
}

func (vb *vhostBuild) finish(fe *frontend) *routing.VirtualHost {
	routing.SortRoutes(vb.routes)
	tls := fe.tlsCovered(vb.name)
	return &routing.VirtualHost{Name: vb.name, TLS: tls, SSLRedirect: tls && !vb.noRedirect, Routes: vb.routes}
}

// routeKey identifies routes that would match the same requests.
type routeKey struct {
	host  string
	exact bool
	path  string
}

func (s *state) vhost(host string) *vhostBuild { return s.main.vhost(host) }

func settingsOf(a annotations) backendSettings {
	return backendSettings{
		protocol:       a.protocol,
		connectTimeout: a.connectTimeout,
		readTimeout:    a.readTimeout,
		maxBodyBytes:   a.maxBodyBytes,
		affinity:       a.affinityOf(),
		learn:          a.learnOf(),
	}
}

// processIngressRules turns the rules and default backends of our
// non-passthrough Ingresses into virtual hosts, oldest Ingress first: a
// route (host, path type, path) or the default backend already claimed by
// an older Ingress is skipped with a Conflict problem.
func processIngressRules(s *state) {
	for _, ing := range s.ingresses {
		a := s.annots[key(ing)]
		if a.passthrough {
			continue
		}
		set := settingsOf(a)
		lim := a.limitOf(ing.Namespace, ing.Name) // one per Ingress, shared by its routes
		if db := ing.Spec.DefaultBackend; db != nil {
			if s.defaultOwner != "" {
				s.ingressProblem(ing, ReasonConflict, "spec.defaultBackend: Ingress %s already sets the default backend; skipped", s.defaultOwner)
			} else if b := s.ingressBackend(ing, db, "spec.defaultBackend", set); b != nil {
				s.defaultBackend, s.defaultOwner = b, nsName(ing)
			}
		}
		for i, rule := range ing.Spec.Rules {
			s.ingressRule(ing, i, rule, a, set, lim)
		}
	}
}

func (s *state) ingressRule(ing *networkingv1.Ingress, i int, rule networkingv1.IngressRule, a annotations, set backendSettings, lim *routing.RequestLimit) {
	host, err := hostPattern(rule.Host)
	if err != nil {
		s.ingressProblem(ing, ReasonInvalidRule, "spec.rules[%d]: %v; skipped", i, err)
		return
	}
	if rule.HTTP == nil || len(rule.HTTP.Paths) == 0 {
		return
	}
	vb := s.vhost(host)
	if a.sslRedirect != nil && !*a.sslRedirect {
		vb.noRedirect = true
	}
	src := nsName(ing)
	for j, p := range rule.HTTP.Paths {
		where := fmt.Sprintf("spec.rules[%d].http.paths[%d]", i, j)
		pt, path, err := pathOf(p)
		if err != nil {
			s.ingressProblem(ing, ReasonInvalidRule, "%s: %v; skipped", where, err)
			continue
		}
		rk := routeKey{host: host, exact: pt == routing.PathExact, path: path}
		if pt != routing.PathExact {
			rk.path = strings.TrimSuffix(path, "/")
		}
		if owner, ok := s.routeOwners[rk]; ok {
			s.ingressProblem(ing, ReasonConflict, "%s: host %q path %q is already routed by Ingress %s; skipped", where, host, path, owner)
			continue
		}
		b := s.ingressBackend(ing, &p.Backend, where, set)
		if b == nil {
			continue
		}
		s.routeOwners[rk] = src
		vb.routes = append(vb.routes, routing.Route{PathType: pt, Path: path, Backend: b, Source: src, Limit: lim})
	}
}

// pathOf validates an HTTPIngressPath: pathType is required; Exact and
// Prefix paths must be absolute; an empty ImplementationSpecific path
// means "/".
func pathOf(p networkingv1.HTTPIngressPath) (routing.PathType, string, error) {
	if p.PathType == nil {
		return 0, "", fmt.Errorf("pathType is required")
	}
	var pt routing.PathType
	switch *p.PathType {
	case networkingv1.PathTypeExact:
		pt = routing.PathExact
	case networkingv1.PathTypePrefix:
		pt = routing.PathPrefix
	case networkingv1.PathTypeImplementationSpecific:
		pt = routing.PathImplementationSpecific
		if p.Path == "" {
			return pt, "/", nil
		}
	default:
		return 0, "", fmt.Errorf("unknown pathType %q", *p.PathType)
	}
	if !strings.HasPrefix(p.Path, "/") {
		return 0, "", fmt.Errorf("path %q must start with /", p.Path)
	}
	return pt, p.Path, nil
}

// passthroughEntry is an SNI name served without termination.
// passthroughEntry is a passed-through name (Ingress ssl-passthrough or a
// TLSRoute on a Passthrough listener), or a terminated one (a TLSRoute on
// a Terminate listener, frontend.terminated).
type passthroughEntry struct {
	backend *routing.Backend
	owner   string
	// gateway marks a TLSRoute's name: a wildcard matches any number of
	// labels (Gateway API), not one (Ingress).
	gateway bool
}

// processPassthrough routes the hosts of Ingresses annotated
// meshgate.io/ssl-passthrough: "true" at L4 by SNI to the rule's backend
// (its first path's, else the Ingress' defaultBackend). Such Ingresses get
// no HTTP routes and no TLS termination.
func processPassthrough(s *state) {
	for _, ing := range s.ingresses {
		if !s.annots[key(ing)].passthrough {
			continue
		}
		for i, rule := range ing.Spec.Rules {
			s.passthroughRule(ing, i, rule)
		}
	}
}

func (s *state) passthroughRule(ing *networkingv1.Ingress, i int, rule networkingv1.IngressRule) {
	where := fmt.Sprintf("spec.rules[%d]", i)
	host, err := hostPattern(rule.Host)
	switch {
	case err != nil:
		s.ingressProblem(ing, ReasonInvalidRule, "%s: %v; skipped", where, err)
		return
	case host == "":
		s.ingressProblem(ing, ReasonInvalidRule, "%s: SSL passthrough routes by SNI and needs a host; skipped", where)
		return
	}
	var be *networkingv1.IngressBackend
	switch {
	case rule.HTTP != nil && len(rule.HTTP.Paths) > 0:
		be = &rule.HTTP.Paths[0].Backend
		if len(rule.HTTP.Paths) > 1 {
			s.ingressProblem(ing, ReasonUnsupported, "%s: SSL passthrough cannot route by path; only the first path's backend is used", where)
		}
	case ing.Spec.DefaultBackend != nil:
		be = ing.Spec.DefaultBackend
	default:
		s.ingressProblem(ing, ReasonInvalidRule, "%s: no backend for SSL passthrough host %q; skipped", where, host)
		return
	}
	if prev, ok := s.passthrough[host]; ok {
		s.ingressProblem(ing, ReasonConflict, "%s: passthrough host %q already belongs to Ingress %s; skipped", where, host, prev.owner)
		return
	}
	if b := s.ingressBackend(ing, be, where, backendSettings{}); b != nil {
		s.passthrough[host] = passthroughEntry{backend: b, owner: nsName(ing)}
	}
}
