// Package kube runs meshgate's control plane against a Kubernetes API
// server: a controller-runtime Manager whose informers feed one owner
// goroutine that keeps a translate.Cache, debounces bursts of changes, builds a
// routing.Table and publishes it into a routing.Holder.
//
// Every replica watches and builds (the data plane of each replica needs the
// table); only the leader (a coordination.k8s.io Lease, when leader election
// is on) writes: Ingress status.loadBalancer, TLSPolicy conditions, the
// status of Gateway API objects of our GatewayClasses (see
// status_gateway.go), Events for problems found in the input, and the mesh
// CA Secret on first start.
//
// Gateway API kinds are watched when the cluster serves their CRDs (checked
// per kind at start); without them meshgate serves Ingress only.
//
// Secrets are not cached wholesale. A metadata-only informer watches
// Secrets of type kubernetes.io/tls (names and resourceVersions, no data);
// the owner goroutine fetches the full Secret through the uncached API
// reader only when an Ingress of our class (or the default certificate
// option) references it and its resourceVersion changed. So private keys of
// Secrets meshgate does not serve never enter its memory. (RBAC cannot
// express "referenced Secrets only": list/watch on Secrets is still granted.)
//
// The mesh peer set comes from the EndpointSlices of a headless Service
// (Controller.Peers); the mesh CA from a Secret (Controller.MeshCA).
package kube

// RBAC for `meshgate run`; hack/generate.sh turns these markers into
// config/rbac/role.yaml.
//
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses;ingressclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=meshgate.io,resources=tlspolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=meshgate.io,resources=tlspolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses;gateways;listenersets;httproutes;grpcroutes;tlsroutes;tcproutes;udproutes;referencegrants;backendtlspolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses/status;gateways/status;listenersets/status;httproutes/status;grpcroutes/status;tlsroutes/status;tcproutes/status;udproutes/status;backendtlspolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
