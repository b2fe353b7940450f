package translate

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

func isTLSSecret(s *corev1.Secret) bool {
	return s != nil && s.Type == corev1.SecretTypeTLS
}

// parseTLSSecret parses a kubernetes.io/tls Secret's tls.crt and tls.key
// into a certificate with Leaf set. The errors wrap ErrInvalidSecret.
func parseTLSSecret(s *corev1.Secret) (*tls.Certificate, error) {
	if !isTLSSecret(s) {
		return nil, fmt.Errorf("%w: type is %q, want %q", ErrInvalidSecret, s.Type, corev1.SecretTypeTLS)
	}
	crt, key := secretData(s, corev1.TLSCertKey), secretData(s, corev1.TLSPrivateKeyKey)
	if len(crt) == 0 || len(key) == 0 {
		return nil, fmt.Errorf("%w: %s and %s must both be set", ErrInvalidSecret, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSecret, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSecret, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

// secretData returns data[k], falling back to stringData[k] for manifests
// read from disk (the API server merges stringData into data; files do not).
func secretData(s *corev1.Secret, k string) []byte {
	if v, ok := s.Data[k]; ok {
		return v
	}
	if v, ok := s.StringData[k]; ok {
		return []byte(v)
	}
	return nil
}
