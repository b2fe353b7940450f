package translate

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// backendSettings are the per-Ingress (or per-L4 entry) knobs that make two
// references to the same Service port distinct backends.
type backendSettings struct {
	protocol       routing.Protocol
	connectTimeout time.Duration
	readTimeout    time.Duration
	maxBodyBytes   int64
	proxyProtocol  int
	// tls is the verified upstream TLS of a BackendTLSPolicy (nil: none).
	tls *routing.UpstreamTLS
	// affinity is cookie affinity (zero Name: none).
	affinity routing.CookieAffinity
	// learn is sticky learn (zero Cookie: none).
	learn routing.LearnAffinity
}

type backendKey struct {
	ns, svc    string
	portName   string
	portNumber int32
	settings   backendSettings
}

// backendBuild is a backend with what it resolved to. port is nil when the
// Service or its port is missing; then err and reason say why and the
// backend keeps no endpoints (the data plane answers 503).
type backendBuild struct {
	b      *routing.Backend
	svc    *corev1.Service
	port   *corev1.ServicePort
	err    error
	reason string
}

func portString(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Number))
}

// ingressBackend resolves an Ingress backend. It returns nil (and records
// a Problem) only when the reference itself is unusable; a missing Service
// or port yields a backend without endpoints plus a Problem.
func (s *state) ingressBackend(ing *networkingv1.Ingress, be *networkingv1.IngressBackend, where string, set backendSettings) *routing.Backend {
	switch {
	case be.Resource != nil:
		s.ingressProblem(ing, ReasonUnsupported, "%s: resource backends are not supported; skipped", where)
		return nil
	case be.Service == nil || be.Service.Name == "":
		s.ingressProblem(ing, ReasonInvalidRule, "%s: no service backend; skipped", where)
		return nil
	case be.Service.Port.Name == "" && be.Service.Port.Number <= 0:
		s.ingressProblem(ing, ReasonInvalidRule, "%s: service %q names no port; skipped", where, be.Service.Name)
		return nil
	}
	return s.serviceBackend("Ingress", ing, where, ing.Namespace, be.Service.Name, be.Service.Port, set)
}

// serviceBackend returns the shared backend for port of Service ns/svc with
// the given settings, resolving it on first use. Problems name owner.
func (s *state) serviceBackend(kind string, owner metav1.Object, where, ns, svc string, port networkingv1.ServiceBackendPort, set backendSettings) *routing.Backend {
	k := backendKey{ns: ns, svc: svc, portName: port.Name, portNumber: port.Number, settings: set}
	bb := s.backends[k]
	if bb == nil {
		bb = s.resolveService(k)
		s.backends[k] = bb
	}
	if bb.err != nil {
		s.problem(kind, owner, bb.reason, "%s: %v; requests get 503 until it exists", where, bb.err)
	}
	return bb.b
}

func (s *state) resolveService(k backendKey) *backendBuild {
	name := fmt.Sprintf("%s/%s:%s", k.ns, k.svc, portString(networkingv1.ServiceBackendPort{Name: k.portName, Number: k.portNumber}))
	bb := &backendBuild{b: &routing.Backend{
		Name:            name,
		Protocol:        k.settings.protocol,
		ConnectTimeout:  k.settings.connectTimeout,
		ResponseTimeout: k.settings.readTimeout,
		MaxBodyBytes:    k.settings.maxBodyBytes,
		ProxyProtocol:   k.settings.proxyProtocol,
		TLS:             k.settings.tls,
	}}
	if k.settings.affinity.Name != "" {
		a := k.settings.affinity
		bb.b.Affinity = &a
	}
	if k.settings.learn.Cookie != "" {
		l := k.settings.learn
		bb.b.Learn = &l
	}
	svc, err := s.c.LookupService(k.ns, k.svc)
	if err != nil {
		bb.err, bb.reason = err, ReasonServiceNotFound
		return bb
	}
	bb.svc = svc
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
		if k.portName != "" {
			return p.Name == k.portName
		}
		return p.Port == k.portNumber
	})
	if i < 0 {
		bb.err = fmt.Errorf("service %s/%s has no port %s", k.ns, k.svc, name[len(k.ns)+len(k.svc)+2:])
		bb.reason = ReasonPortNotFound
		return bb
	}
	bb.port = &svc.Spec.Ports[i]
	return bb
}

// endpointsKey names the endpoints of one Service port.
type endpointsKey struct{ ns, svc, port string }

// resolveEndpoints fills the Endpoints of every resolved backend from the
// Service's EndpointSlices.
func resolveEndpoints(s *state) {
	memo := map[endpointsKey][]string{}
	for _, bb := range s.backends {
		if bb.port == nil {
			continue
		}
		k := endpointsKey{bb.svc.Namespace, bb.svc.Name, bb.port.Name}
		eps, ok := memo[k]
		if !ok {
			eps = s.endpoints(bb.svc, bb.port)
			memo[k] = eps
		}
		bb.b.Endpoints = eps
	}
}

// endpoints lists the ready addresses of a Service port: "ip:port" from
// EndpointSlices whose port name equals the Service port's name, or
// "externalName:port" for an ExternalName Service. Sorted, no duplicates;
// empty (non-nil) when none is ready.
func (s *state) endpoints(svc *corev1.Service, sp *corev1.ServicePort) []string {
	out := []string{}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		if svc.Spec.ExternalName != "" {
			out = append(out, net.JoinHostPort(svc.Spec.ExternalName, strconv.Itoa(int(sp.Port))))
		}
		return out
	}
	for _, es := range s.c.EndpointSlicesFor(svc.Namespace, svc.Name) {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, err := slicePort(es, sp.Name)
		if err != nil {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if ip := net.ParseIP(a); ip != nil {
					out = append(out, net.JoinHostPort(ip.String(), port))
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var errNoSlicePort = errors.New("no matching port")

// slicePort returns the number of the slice port named name ("" matches an
// unnamed port).
func slicePort(es *discoveryv1.EndpointSlice, name string) (string, error) {
	for _, p := range es.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil && *p.Port > 0 {
			return strconv.Itoa(int(*p.Port)), nil
		}
	}
	return "", errNoSlicePort
}
