// Package translate turns Kubernetes objects (Ingress, IngressClass, Service,
// EndpointSlice, Secret, ConfigMap, TLSPolicy) into an immutable
// routing.Table.
//
// The objects live in a Cache that one goroutine owns. ToTable is a pure
// function of the cache and the options: it runs one processor per concern
// (IngressClass selection, TLS policies, TLS certificates, SSL passthrough,
// Ingress rules, L4 services, endpoints) over a per-call state and sorts its
// output, so the same objects always produce the same table. Everything
// wrong with the input becomes a Problem naming the object; the broken part
// is skipped and the rest still builds.
package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Defaults for Options.
const (
	DefaultControllerName = "meshgate.io/ingress-controller"
	DefaultIngressClass   = "meshgate"
	// DefaultGatewayControllerName is the spec.controllerName of the
	// GatewayClasses meshgate serves.
	DefaultGatewayControllerName = "meshgate.io/gateway-controller"
	// DefaultGatewayHTTPPort and DefaultGatewayHTTPSPort are the Gateway
	// listener ports of meshgate's plain-HTTP and TLS front ends.
	DefaultGatewayHTTPPort  = 80
	DefaultGatewayHTTPSPort = 443
)

// Options configure Build. The zero value is valid: every empty field takes
// the default named on it.
type Options struct {
	// ControllerName is the spec.controller of our IngressClasses
	// (default DefaultControllerName).
	ControllerName string
	// IngressClass is our class name for the legacy
	// kubernetes.io/ingress.class annotation (default DefaultIngressClass).
	IngressClass string
	// DefaultCertificate is the "namespace/name" of a kubernetes.io/tls
	// Secret served to clients whose SNI matches no TLS host. Empty means
	// the first valid certificate of the oldest Ingress with spec.tls.
	DefaultCertificate string
	// DefaultSessionMode is the session mode of the built-in default
	// policy used by hosts no TLSPolicy selects (default Stateful).
	DefaultSessionMode routing.SessionMode
	// L4ConfigMap is the "namespace/name" of the ConfigMap listing TCP and
	// UDP services; empty means none.
	L4ConfigMap string
	// GatewayControllerName is the spec.controllerName of our
	// GatewayClasses (default DefaultGatewayControllerName).
	GatewayControllerName string
	// GatewayHTTPPort is the Gateway listener port served by meshgate's
	// plain-HTTP front end, GatewayHTTPSPort the one served by its TLS front
	// end (HTTPS and TLS passthrough listeners): the ports clients reach
	// them on, e.g. the published Service's (defaults 80 and 443). HTTP,
	// HTTPS and TLS listeners on other ports are not accepted
	// (PortUnavailable); TCP and UDP listeners may use any other port.
	GatewayHTTPPort, GatewayHTTPSPort int
	// GatewayAddresses are the addresses (IPs or host names) meshgate is
	// reached on, published in the status of merged Gateways; empty leaves
	// them unprogrammed (AddressNotAssigned).
	GatewayAddresses []string
	// GatewayAddressPool, when not empty, gives every Gateway of our
	// classes an address of its own from these (sorted, see
	// ParseAddressPool): its listeners are served there only, from a
	// frontend table of their own (routing.Table.Frontends), and its
	// status publishes that address. Empty merges every Gateway onto
	// meshgate's own addresses (GatewayAddresses).
	GatewayAddressPool []netip.Addr
	// Generation is copied into Table.Generation.
	Generation uint64
	// Now is copied into Table.BuiltAt; zero means time.Now().
	Now time.Time
}

// WithDefaults returns o with every unset field at its default, the
// values Translate uses; callers that compare their own options with what
// a build produced (the status writer's controller names) take them from
// here.
func (o Options) WithDefaults() Options {
	if o.ControllerName == "" {
		o.ControllerName = DefaultControllerName
	}
	if o.IngressClass == "" {
		o.IngressClass = DefaultIngressClass
	}
	if o.DefaultSessionMode == "" {
		o.DefaultSessionMode = routing.SessionStateful
	}
	if o.GatewayControllerName == "" {
		o.GatewayControllerName = DefaultGatewayControllerName
	}
	if o.GatewayHTTPPort == 0 {
		o.GatewayHTTPPort = DefaultGatewayHTTPPort
	}
	if o.GatewayHTTPSPort == 0 {
		o.GatewayHTTPSPort = DefaultGatewayHTTPSPort
	}
	return o
}

// Problem reasons. Reconcilers turn them into Events and conditions.
const (
	ReasonConflict           = "Conflict"
	ReasonInvalidAnnotation  = "InvalidAnnotation"
	ReasonInvalidRule        = "InvalidRule"
	ReasonServiceNotFound    = "ServiceNotFound"
	ReasonPortNotFound       = "PortNotFound"
	ReasonUnsupported        = "Unsupported"
	ReasonSecretNotFound     = "SecretNotFound"
	ReasonInvalidCertificate = "InvalidCertificate"
	ReasonPolicyNotFound     = "PolicyNotFound"
	ReasonInvalidPolicy      = "InvalidPolicy"
	ReasonInvalidL4          = "InvalidL4Service"
	ReasonConfigMapNotFound  = "ConfigMapNotFound"
)

// Problem is something wrong with one object: the named part was skipped
// (or a default used) and the rest of the table built.
type Problem struct {
	// Kind is the Kubernetes kind of the object at fault ("Ingress",
	// "TLSPolicy", "ConfigMap", "Secret").
	Kind      string
	Namespace string
	Name      string
	// Reason is one of the Reason constants (CamelCase, for Events).
	Reason string
	// Message says what was wrong and what was done about it.
	Message string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s %s/%s: %s: %s", p.Kind, p.Namespace, p.Name, p.Reason, p.Message)
}

func compareProblems(a, b Problem) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name), cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Message, b.Message))
}

// state is what one Build call works on; processors share it and nothing
// else, so Build is re-entrant.
type state struct {
	c    *Cache
	opts Options

	problems []Problem

	// ingresses are ours, oldest first (then namespace/name).
	ingresses []*networkingv1.Ingress
	annots    map[types.NamespacedName]annotations

	defaultPolicy *routing.TLSPolicy
	policies      map[types.NamespacedName]policyResult
	nsPolicies    map[string][]policyResult // valid ones, by name

	// main is what meshgate's own addresses serve; tlsHosts, vhosts and
	// passthrough are its maps (the Ingress processors write them).
	main        *frontend
	tlsHosts    map[string]*tlsHostBuild // by host pattern
	defaultCert *tlsCandidate
	// defaultFromOption: defaultCert is Options.DefaultCertificate.
	defaultFromOption bool

	gw *gwState

	vhosts         map[string]*vhostBuild // by host pattern, "" = catch-all
	routeOwners    map[routeKey]string
	defaultBackend *routing.Backend
	defaultOwner   string

	passthrough map[string]passthroughEntry
	l4          []routing.L4Service

	backends map[backendKey]*backendBuild
}

// processor is one concern of the build.
type processor func(*state)

// processors run in this order: later ones read what earlier ones built.
var processors = []processor{
	selectIngresses,
	convertPolicies,
	processTLS,
	processPassthrough,
	processIngressRules,
	processL4,
	processGatewayClasses,
	processGateways,
	processBackendTLSPolicies,
	processHTTPRoutes,
	processGRPCRoutes,
	processTLSRoutes,
	processTCPRoutes,
	processUDPRoutes,
	finishBackendTLS,
	finishGateways,
	resolveEndpoints,
	finishL4Merges,
}

// Result is everything one build produces.
type Result struct {
	Table *routing.Table
	// Problems found in the input, sorted; each names its object.
	Problems []Problem
	// Gateway is the status to write for Gateway API objects.
	Gateway *GatewayStatuses
}

// ToTable produces the routing table for the objects in c, and the problems
// found on the way (see Translate).
func ToTable(c *Cache, opts Options) (*routing.Table, []Problem) {
	r := Translate(c, opts)
	return r.Table, r.Problems
}

// Translate builds the routing table for the objects in c, the problems
// found on the way and the Gateway API status to write. It only reads c,
// never retains it, and returns a table that shares nothing mutable with c
// (parsed certificates are shared and must be treated as read-only). The
// result is deterministic for a given cache content and opts.
func Translate(c *Cache, opts Options) Result {
	main := newFrontend(netip.Addr{})
	s := &state{
		c:           c,
		opts:        opts.WithDefaults(),
		annots:      map[types.NamespacedName]annotations{},
		policies:    map[types.NamespacedName]policyResult{},
		nsPolicies:  map[string][]policyResult{},
		main:        main,
		tlsHosts:    main.tlsHosts,
		vhosts:      main.vhosts,
		routeOwners: map[routeKey]string{},
		passthrough: main.passthrough,
		backends:    map[backendKey]*backendBuild{},
	}
	s.defaultPolicy = routing.DefaultPolicy()
	s.defaultPolicy.SessionMode = s.opts.DefaultSessionMode
	for _, p := range processors {
		p(s)
	}
	t := s.table()
	slices.SortFunc(s.problems, compareProblems)
	return Result{Table: t, Problems: slices.CompactFunc(s.problems, func(a, b Problem) bool { return a == b }), Gateway: s.gw.status}
}

func (s *state) problem(kind string, obj metav1.Object, reason, format string, args ...any) {
	s.problems = append(s.problems, Problem{
		Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(),
		Reason: reason, Message: fmt.Sprintf(format, args...),
	})
}

func (s *state) ingressProblem(ing *networkingv1.Ingress, reason, format string, args ...any) {
	s.problem("Ingress", ing, reason, format, args...)
}

// table assembles the routing.Table from the processors' results: the
// table of meshgate's own addresses, with one frontend table per Gateway
// that has an address of its own.
func (s *state) table() *routing.Table {
	now := s.opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	t := s.newTable(now)
	t.HTTP.DefaultBackend = s.defaultBackend
	t.L4 = s.l4
	s.main.fill(t)
	s.fillTLS(&t.TLS)
	for _, fe := range s.gw.fronts {
		ft := s.newTable(now)
		fe.fill(ft)
		if fe.gwDefaultCert != nil {
			ft.TLS.Default = &routing.TLSHost{Certificate: fe.gwDefaultCert, Policy: fe.gwDefaultPolicy}
		}
		ft.Kind = fe.kind
		if t.Frontends == nil {
			t.Frontends = map[netip.AddrPort]*routing.Table{}
		}
		t.Frontends[netip.AddrPortFrom(fe.addr, uint16(fe.port))] = ft
	}
	slices.SortFunc(t.L4, func(a, b routing.L4Service) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	return t
}

// newTable returns an empty table of this build.
func (s *state) newTable(now time.Time) *routing.Table {
	return &routing.Table{
		Generation: s.opts.Generation,
		BuiltAt:    now,
		HTTP: routing.HTTPRoutes{
			Hosts:     map[string]*routing.VirtualHost{},
			Wildcards: map[string]*routing.VirtualHost{},
			Suffixes:  map[string]*routing.VirtualHost{},
		},
		TLS: routing.TLSHosts{
			Exact:     map[string]*routing.TLSHost{},
			Wildcards: map[string]*routing.TLSHost{},
		},
		Passthrough:         map[string]*routing.Backend{},
		PassthroughSuffixes: map[string]*routing.Backend{},
	}
}

func isWildcard(host string) bool { return len(host) > 2 && host[0] == '*' && host[1] == '.' }

// helpers shared by the cache and the processors.

func compareStrings(a, b string) int { return cmp.Compare(a, b) }

func compareKeys(a, b metav1.Object) int {
	return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
}

// compareAge orders oldest first, then by namespace/name.
func compareAge(a, b metav1.Object) int {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if c := ta.Time.Compare(tb.Time); c != 0 {
		return c
	}
	return compareKeys(a, b)
}

func sortedValues[K comparable, V any](m map[K]V, f func(a, b V) int) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, f)
	return out
}

func nsName(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() }
