package kube

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/translate"
	"k8s.io/apimachinery/pkg/types"
)

// Defaults for Options.
const (
	DefaultLeaderElectionID = "meshgate-leader"
	DefaultMeshPortName     = "mesh"
	DefaultFieldManager     = "meshgate"
	// MeshCASecretType is the type of the Secret holding the mesh CA
	// (keys ca.crt and ca.key, PEM).
	MeshCASecretType = "meshgate.io/mesh-ca"
)

// Options configure a Controller. Only Holder is required; every other
// zero field takes the default named on it.
type Options struct {
	// Holder receives every table built. Required; the controller is the
	// only writer.
	Holder *routing.Holder

	// Build configures the table builder (controller name, class name,
	// default certificate, default session mode, L4 ConfigMap). Generation
	// and Now are set by the controller.
	Build translate.Options

	// Namespace limits every watch to one namespace; "" watches all.
	Namespace string

	// PublishService is "namespace/name" of meshgate's own Service; its
	// status.loadBalancer.ingress (else spec.externalIPs) is copied into
	// the status of our Ingresses. Ignored when PublishStatusAddress is set.
	PublishService string
	// PublishStatusAddress lists fixed addresses (IPs or host names) for
	// Ingress status. With neither field set, Ingress status is not written.
	PublishStatusAddress []string

	// LeaderElect turns on leader election through a Lease named
	// LeaderElectionID (default DefaultLeaderElectionID) in
	// LeaderElectionNamespace (required with LeaderElect). Without it this
	// replica behaves as the leader.
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string
	// LeaseDuration, RenewDeadline and RetryPeriod tune the election;
	// zero means controller-runtime's defaults (15 s, 10 s, 2 s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// MeshService is "namespace/name" of the headless Service whose
	// EndpointSlices list the session mesh peers; "" disables discovery.
	MeshService string
	// MeshPortName is the EndpointSlice port carrying the mesh (default
	// DefaultMeshPortName).
	MeshPortName string
	// MeshCASecret is "namespace/name" of the mesh CA Secret; the leader
	// creates it on first start when absent. "" disables MeshCA.
	MeshCASecret string
	// MeshCAReload is how often a running controller re-reads the mesh CA
	// Secret and updates the Identity MeshIdentity returned (a rotation
	// step reaches every replica within it); 0 means 10 s.
	MeshCAReload time.Duration

	// HoldOff is how long the owner goroutine waits after a change for
	// more changes before building; MaxDelay caps the wait since the first
	// unbuilt change. Zero means debounce.DefaultHoldOff and
	// debounce.DefaultMaxDelay, the defaults of both sources.
	HoldOff, MaxDelay time.Duration

	// FieldManager names meshgate's server-side-apply field manager
	// (default DefaultFieldManager).
	FieldManager string

	// Logger receives the controller's logs; the zero value discards.
	Logger logr.Logger

	// OnPublish, when set, is called by the owner goroutine after each
	// table is stored (Holder.Changed wakes its waiters first), with the time the oldest change it contains was
	// received (zero for the first table). It must not block.
	OnPublish func(t *routing.Table, problems []translate.Problem, changedAt time.Time)

	// OnStatusApplied, when set, is called by the status writer (on the
	// leader) after each pass over a desired status, with the generation of
	// the table that status was derived from and the pass's error (nil when
	// every write succeeded). A pass for generation g has written, or found
	// already written, every status that table implies; tests wait on it
	// instead of sleeping before they assert that a status was not written.
	// It must not block.
	OnStatusApplied func(generation uint64, err error)
}

func (o Options) withDefaults() Options {
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = DefaultLeaderElectionID
	}
	if o.MeshPortName == "" {
		o.MeshPortName = DefaultMeshPortName
	}
	if o.FieldManager == "" {
		o.FieldManager = DefaultFieldManager
	}
	// The build's defaults, so that the status writer recognises the
	// controller names the build writes into status (a Gateway route's
	// parents were not recognised as ours and grew by one per pass).
	o.Build = o.Build.WithDefaults()
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.Holder == nil {
		errs = append(errs, errors.New("Holder is required"))
	}
	if o.LeaderElect && o.LeaderElectionNamespace == "" {
		errs = append(errs, errors.New("LeaderElectionNamespace is required with LeaderElect"))
	}
	for name, v := range map[string]string{
		"PublishService": o.PublishService, "MeshService": o.MeshService,
		"MeshCASecret": o.MeshCASecret, "Build.L4ConfigMap": o.Build.L4ConfigMap,
		"Build.DefaultCertificate": o.Build.DefaultCertificate,
	} {
		if _, err := ParseNamespacedName(v); v != "" && err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// ParseNamespacedName parses "namespace/name"; both parts must be non-empty.
func ParseNamespacedName(s string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, fmt.Errorf("%q is not namespace/name", s)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// mustNN parses a name validate already checked; "" gives the zero value.
func mustNN(s string) types.NamespacedName {
	nn, _ := ParseNamespacedName(s)
	return nn
}
