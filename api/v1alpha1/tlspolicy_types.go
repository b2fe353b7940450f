package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TLSPolicy sets how meshgate terminates TLS for the hosts it selects:
// protocol versions, cipher suites, key-exchange groups and how sessions
// resume across the replicas of the cluster.
type TLSPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TLSPolicySpec   `json:"spec,omitempty"`
	Status TLSPolicyStatus `json:"status,omitempty"`
}

// TLSPolicySpec selects hosts and sets TLS parameters for them.
type TLSPolicySpec struct {
	// Hosts lists the TLS host names (exact, or "*.example.com") of
	// Ingresses in this namespace that this policy applies to. An Ingress
	// may also name a policy with the meshgate.io/tls-policy annotation,
	// which wins over host selection.
	// +optional
	Hosts []string `json:"hosts,omitempty"`

	// IngressSelector selects Ingresses in this namespace by label; every
	// TLS host of a selected Ingress gets this policy.
	// +optional
	IngressSelector *metav1.LabelSelector `json:"ingressSelector,omitempty"`

	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	// +optional
	MinVersion string `json:"minVersion,omitempty"`

	// MaxVersion is the highest TLS version offered: "1.2" or "1.3" (default).
	// +optional
	MaxVersion string `json:"maxVersion,omitempty"`

	// CipherSuites lists TLS 1.2 cipher suites by their IANA names
	// (as Go's tls.CipherSuiteName prints them), in preference order.
	// Empty means Go's secure defaults. TLS 1.3 suites are not configurable.
	// +optional
	CipherSuites []string `json:"cipherSuites,omitempty"`

	// Curves lists key-exchange groups in preference order: X25519,
	// X25519MLKEM768, P-256, P-384, P-521. Empty means meshgate's default
	// (X25519 first; see docs/tlspolicy.md for why).
	// +optional
	Curves []string `json:"curves,omitempty"`

	// SessionResumption configures cluster-wide session resumption.
	// +optional
	SessionResumption SessionResumption `json:"sessionResumption,omitempty"`

	// EarlyData allows 0-RTT on HTTP/3 for safe (idempotent) methods.
	// +optional
	EarlyData bool `json:"earlyData,omitempty"`
}

// SessionResumptionMode is how sessions resume across replicas.
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

	// Lifetime is how long a session can be resumed (default 300s).
	// +optional
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`

	// TicketKeyRotation is how often the cluster ticket key rotates in
	// TicketKeys mode (default 1h).
	// +optional
	TicketKeyRotation *metav1.Duration `json:"ticketKeyRotation,omitempty"`
}

// TLSPolicyStatus reports whether the policy was accepted and programmed.
type TLSPolicyStatus struct {
	// Conditions: Accepted and Programmed.
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TLSPolicyList is a list of TLSPolicy.
type TLSPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TLSPolicy `json:"items"`
}
