package mesh

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Establishing a connection, in both roles: mutual TLS 1.3 against the
// cluster CA, then the Hello exchange (version, cluster id, node name
// matching the certificate).

// Rejection reasons (metric label values).
const (
	RejectNoClientCert = "no_client_cert"
	RejectBadCert      = "bad_cert"
	RejectHandshake    = "tls_handshake"
	RejectHello        = "bad_hello"
	RejectCluster      = "cluster_mismatch"
	RejectVersion      = "version_mismatch"
	RejectName         = "name_mismatch"
	RejectSelf         = "self"
	RejectTooMany      = "too_many_connections"
	// RejectTooManyHandshakes: a stranger's handshake beyond
	// MaxHandshakesPerSource or MaxHandshakes (see admission).
	RejectTooManyHandshakes = "too_many_handshakes"
	RejectMalformed         = "malformed_frame"
	RejectTooLarge          = "frame_too_large"
	// RejectUntrusted: an established connection closed by Reverify
	// because the CA of its certificate is no longer trusted.
	RejectUntrusted = "untrusted_after_rotation"
)

// RejectReasons returns every rejection reason, so metrics can export
// zero-valued series up front.
func RejectReasons() []string {
	return []string{RejectNoClientCert, RejectBadCert, RejectHandshake, RejectHello, RejectCluster,
		RejectVersion, RejectName, RejectSelf, RejectTooMany, RejectTooManyHandshakes, RejectMalformed, RejectTooLarge,
		RejectUntrusted}
}

var (
	errSelf = errors.New("mesh: connected to self")
	// errNoClientCert and errBadCert are what the server's VerifyConnection
	// returns; crypto/tls hands them back from the handshake unchanged, so
	// they are classified with errors.Is instead of by message.
	errNoClientCert = errors.New("mesh: peer sent no certificate")
	errBadCert      = errors.New("mesh: peer certificate not issued by the cluster CA")
)

// tlsConfigs returns the listener's and the dialer's TLS configurations.
// Both verify the peer's chain against the cluster CA in VerifyConnection
// (host names are not checked: peers are addressed by IP or pod name, and
// the name is compared with the Hello later).
func (m *Mesh) tlsConfigs() (server, client *tls.Config) {
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errNoClientCert
		}
		raw := make([][]byte, len(cs.PeerCertificates))
		for i, c := range cs.PeerCertificates {
			raw[i] = c.Raw
		}
		if _, err := m.cfg.CA.VerifyPeer(raw); err != nil {
			return fmt.Errorf("%w: %w", errBadCert, err)
		}
		return nil
	}
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return m.cfg.Cert() }
	server = &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Requested, then required and verified by VerifyConnection, which
		// crypto/tls runs whether or not the client sent one.
		ClientAuth:       tls.RequestClientCert,
		GetCertificate:   getCert,
		VerifyConnection: verify,
	}
	client = &tls.Config{
		MinVersion:           tls.VersionTLS13,
		InsecureSkipVerify:   true, // VerifyConnection verifies the chain instead
		VerifyConnection:     verify,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return m.cfg.Cert() },
	}
	return server, client
}

// classifyTLS names the rejection reason of a failed inbound handshake.
func classifyTLS(err error) string {
	switch {
	case errors.Is(err, errNoClientCert):
		return RejectNoClientCert
	case errors.Is(err, errBadCert):
		return RejectBadCert
	}
	return RejectHandshake
}

// maxVersion is the highest protocol version this node announces.
func (m *Mesh) maxVersion() uint16 {
	if v := m.cfg.MaxVersion; v >= wire.MinVersion && v < wire.MaxVersion {
		return v
	}
	return wire.MaxVersion
}

func (m *Mesh) hello() *wire.Hello {
	return &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: m.maxVersion(),
		ClusterID: m.cfg.ClusterID, NodeName: m.cfg.NodeName, MeshAddr: m.cfg.AdvertiseAddr}
}

// rejectError carries a rejection reason for metrics.
type rejectError struct {
	reason string
	err    error
}

func (e *rejectError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

func reject(reason string, format string, args ...any) error {
	return &rejectError{reason: reason, err: fmt.Errorf(format, args...)}
}

// readHello reads and validates the peer's Hello against our config and
// the peer certificate, and switches the connection to the negotiated
// version: the highest both announce. The deadline must already be set.
func (c *conn) readHello() (*wire.Hello, error) {
	msg, err := c.fr.ReadMessage()
	if err != nil {
		return nil, reject(RejectHello, "read hello: %w", err)
	}
	h, ok := msg.(*wire.Hello)
	if !ok {
		return nil, reject(RejectHello, "first message is %v", msg.Type())
	}
	v, ok := wire.Negotiate(wire.MinVersion, c.m.maxVersion(), h.MinVersion, h.MaxVersion)
	if !ok {
		return nil, reject(RejectVersion, "peer speaks %d..%d", h.MinVersion, h.MaxVersion)
	}
	if h.ClusterID != c.m.cfg.ClusterID {
		return nil, reject(RejectCluster, "peer cluster %q", h.ClusterID)
	}
	if h.NodeName == c.m.cfg.NodeName {
		return nil, &rejectError{reason: RejectSelf, err: errSelf}
	}
	certs := c.tc.ConnectionState().PeerCertificates
	if len(certs) == 0 || certs[0].Subject.CommonName != h.NodeName {
		return nil, reject(RejectName, "hello name %q does not match certificate", h.NodeName)
	}
	c.peerName = h.NodeName
	c.version, c.fr.Version = v, v
	return h, nil
}
