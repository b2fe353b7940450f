package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TLSPolicy sets how meshgate terminates TLS for the hosts it selects:
// protocol versions, cipher suites, key-exchange groups and how sessions
// resume across the replicas of the cluster.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tlsp,categories=meshgate
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.sessionResumption.mode`
// +kubebuilder:printcolumn:name="MinVersion",type=string,JSONPath=`.spec.minVersion`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TLSPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TLSPolicySpec   `json:"spec,omitempty"`
	Status TLSPolicyStatus `json:"status,omitempty"`
}

// TLSPolicySpec selects hosts and sets TLS parameters for them.
//
// Versions compare as strings ("1.2" < "1.3"), which is what the CEL rules
// below rely on.
//
// +kubebuilder:validation:XValidation:rule="!has(self.minVersion) || !has(self.maxVersion) || self.minVersion <= self.maxVersion",message="minVersion must not be above maxVersion"
// +kubebuilder:validation:XValidation:rule="!has(self.cipherSuites) || size(self.cipherSuites) == 0 || !has(self.minVersion) || self.minVersion == '1.2'",message="cipherSuites apply to TLS 1.2 only and need minVersion 1.2 (TLS 1.3 suites are not configurable)"
type TLSPolicySpec struct {
	// Hosts lists the TLS host names (exact, or "*.example.com") of
	// Ingresses in this namespace that this policy applies to. An Ingress
	// may also name a policy with the meshgate.io/tls-policy annotation,
	// which wins over host selection.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +listType=set
	Hosts []string `json:"hosts,omitempty"`

	// IngressSelector selects Ingresses in this namespace by label; every
	// TLS host of a selected Ingress gets this policy.
	// +optional
	IngressSelector *metav1.LabelSelector `json:"ingressSelector,omitempty"`

	// TargetRefs attach the policy to Gateways of this namespace, Gateway
	// API policy-attachment style: every HTTPS listener of the Gateway, or
	// only the listener named by sectionName, serves its hostname with this
	// policy. A policy naming the listener wins over one naming the whole
	// Gateway; between equals the oldest policy wins and the others report
	// Conflicted in status.ancestors.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	TargetRefs []PolicyTargetReference `json:"targetRefs,omitempty"`

	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	// +optional
	// +kubebuilder:validation:Enum="1.2";"1.3"
	MinVersion string `json:"minVersion,omitempty"`

	// MaxVersion is the highest TLS version offered: "1.2" or "1.3" (default).
	// +optional
	// +kubebuilder:validation:Enum="1.2";"1.3"
	MaxVersion string `json:"maxVersion,omitempty"`

	// CipherSuites lists TLS 1.2 cipher suites by their IANA names
	// (as Go's tls.CipherSuiteName prints them), in preference order.
	// Empty means Go's secure defaults. TLS 1.3 suites are not configurable.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Enum=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256;TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384;TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256;TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA;TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA;TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA;TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
	// +listType=set
	CipherSuites []string `json:"cipherSuites,omitempty"`

	// Curves is the set of key-exchange groups offered: X25519,
	// X25519MLKEM768, P-256, P-384, P-521. The order is ignored (Go's TLS
	// stack applies its own preference, hybrid post-quantum first). Empty
	// means meshgate's default: X25519MLKEM768, X25519, P-256, P-384 (see
	// docs/tlspolicy.md for the CPU cost and why it is on).
	// +optional
	// +kubebuilder:validation:MaxItems=5
	// +kubebuilder:validation:items:Enum=X25519;X25519MLKEM768;P-256;P-384;P-521
	// +listType=set
	Curves []string `json:"curves,omitempty"`

	// SessionResumption configures cluster-wide session resumption.
	// +optional
	SessionResumption SessionResumption `json:"sessionResumption,omitempty"`

	// EarlyData allows 0-RTT on HTTP/3 for safe (idempotent) methods.
	// +optional
	EarlyData bool `json:"earlyData,omitempty"`
}

// SessionResumptionMode is how sessions resume across replicas.
// +kubebuilder:validation:Enum=Stateful;TicketKeys;Off
type SessionResumptionMode string

const (
	// SessionResumptionStateful keeps session state in the cluster-wide
	// session mesh; clients hold only an opaque id.
	SessionResumptionStateful SessionResumptionMode = "Stateful"
	// SessionResumptionTicketKeys issues stateless tickets sealed with
	// cluster-wide ticket keys rotated on an interval.
	SessionResumptionTicketKeys SessionResumptionMode = "TicketKeys"
	// SessionResumptionOff disables resumption.
	SessionResumptionOff SessionResumptionMode = "Off"
)

// SessionResumption configures resumption.
type SessionResumption struct {
	// Mode is Stateful (default), TicketKeys or Off.
	// +optional
	Mode SessionResumptionMode `json:"mode,omitempty"`

	// Lifetime is how long a session can be resumed (default 300s),
	// between 1s and 24h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="lifetime must be between 1s and 24h"
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`

	// TicketKeyRotation is how often the cluster ticket key rotates in
	// TicketKeys mode (default 1h); at least 1m.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="ticketKeyRotation must be at least 1m"
	TicketKeyRotation *metav1.Duration `json:"ticketKeyRotation,omitempty"`
}

// TLSPolicyStatus reports whether the policy was accepted and programmed.
type TLSPolicyStatus struct {
	// Conditions: Accepted and Programmed.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Ancestors reports, per Gateway named in spec.targetRefs, whether the
	// policy took effect there (condition Accepted: reasons Accepted,
	// Conflicted, TargetNotFound, Invalid), as Gateway API policies do.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Ancestors []PolicyAncestorStatus `json:"ancestors,omitempty"`
}

// PolicyTargetReference names a Gateway (group gateway.networking.k8s.io,
// kind Gateway) in the policy's namespace, optionally one of its listeners.
type PolicyTargetReference struct {
	// Group is gateway.networking.k8s.io.
	// +kubebuilder:validation:Enum=gateway.networking.k8s.io
	Group string `json:"group"`
	// Kind is Gateway.
	// +kubebuilder:validation:Enum=Gateway
	Kind string `json:"kind"`
	// Name of the Gateway.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// SectionName names one listener of the Gateway; empty means all of
	// its HTTPS listeners.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SectionName string `json:"sectionName,omitempty"`
}

// PolicyAncestorStatus is the outcome of the policy on one Gateway.
type PolicyAncestorStatus struct {
	// AncestorRef is the Gateway (and listener) the policy targets.
	AncestorRef PolicyTargetReference `json:"ancestorRef"`
	// ControllerName is meshgate.io/gateway-controller.
	ControllerName string `json:"controllerName"`
	// Conditions: Accepted.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TLSPolicyList is a list of TLSPolicy.
//
// +kubebuilder:object:root=true
type TLSPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TLSPolicy `json:"items"`
}

// Condition types and reasons written to TLSPolicy status.
const (
	// ConditionAccepted is True when the spec is valid and meshgate uses
	// the policy; False with reason Invalid otherwise.
	ConditionAccepted = "Accepted"
	// ConditionProgrammed is True once a routing table using the policy's
	// current generation is serving.
	ConditionProgrammed = "Programmed"

	ReasonAccepted   = "Accepted"
	ReasonInvalid    = "Invalid"
	ReasonProgrammed = "Programmed"
	ReasonPending    = "Pending"
)

func init() {
	SchemeBuilder.Register(&TLSPolicy{}, &TLSPolicyList{})
}
