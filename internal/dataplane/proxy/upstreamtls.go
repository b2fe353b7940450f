package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/meshgate/meshgate/internal/routing"
)

// upstreamTLS is the client configuration for a backend under a
// BackendTLSPolicy: SNI ServerName; the chain verified against RootCAs
// (nil: the system roots); the certificate must name ServerName, or, when
// the policy lists subject alternative names, one of those.
func upstreamTLS(up *routing.UpstreamTLS) *tls.Config {
	cfg := &tls.Config{ServerName: up.ServerName, RootCAs: up.RootCAs, MinVersion: tls.VersionTLS12}
	if len(up.DNSNames) == 0 && len(up.URIs) == 0 {
		return cfg
	}
	// Verify the chain ourselves, then match the SANs instead of
	// ServerName.
	cfg.InsecureSkipVerify = true //nolint:gosec // VerifyConnection verifies
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { return verifySANs(cs, up) }
	return cfg
}

var errNoPeerCert = errors.New("proxy: backend sent no certificate")

func verifySANs(cs tls.ConnectionState, up *routing.UpstreamTLS) error {
	if len(cs.PeerCertificates) == 0 {
		return errNoPeerCert
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: up.RootCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("proxy: backend certificate: %w", err)
	}
	for _, n := range up.DNSNames {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	for _, u := range leaf.URIs {
		if slices.Contains(up.URIs, u.String()) {
			return nil
		}
	}
	return fmt.Errorf("proxy: backend certificate names none of %v %v", up.DNSNames, up.URIs)
}
