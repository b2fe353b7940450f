// Package pki manages the session mesh's private cluster CA and the node
// certificates issued from it. Every replica holds the CA (from --mesh-dir
// or a Kubernetes Secret) and issues its own short-lived node certificate in
// memory; mesh connections are mutually authenticated against the trusted
// CAs, so only holders of a trusted CA can join.
//
// The CA is rotated without downtime in three steps (Rotate): trust the
// new CA beside the old, sign with the new, stop trusting the old. A
// replica holds the current material in an Identity, which it updates when
// the material changes (Secret or files) without restarting; its node
// certificate follows the signing CA, and its mesh drops connections whose
// certificates are no longer trusted. See docs/security.md.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// File names inside a CA directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// DefaultNodeValidity is the lifetime of issued node certificates.
const DefaultNodeValidity = 7 * 24 * time.Hour

// CA is a parsed cluster CA. It is immutable and safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
	pool    *x509.CertPool
}

// NewCA generates a fresh ECDSA P-256 CA valid for ten years, in memory.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"meshgate session mesh"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal CA key: %w", err)
	}
	return ParseCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

// GenerateCA creates a new CA and writes dir/ca.crt (0644) and dir/ca.key
// (0600). It refuses to overwrite an existing CA (the error wraps
// fs.ErrExist).
func GenerateCA(dir string) (*CA, error) {
	ca, err := NewCA("meshgate mesh CA")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := writeNew(filepath.Join(dir, KeyFile), ca.keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, CertFile), ca.certPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: close %s: %w", path, err)
	}
	return nil
}

// LoadCA reads dir/ca.crt and dir/ca.key.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return ParseCA(certPEM, keyPEM)
}

// ParseCA parses a PEM certificate and PEM private key (PKCS#8, EC or
// PKCS#1), for example from a Kubernetes Secret's tls.crt and tls.key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("pki: certificate is not a CA")
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("pki: CA key cannot sign")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: signer, certPEM: certPEM, keyPEM: keyPEM, pool: pool}, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// PEM returns the certificate and key in PEM form. The key is secret.
func (ca *CA) PEM() (certPEM, keyPEM []byte) { return ca.certPEM, ca.keyPEM }

// Pool returns a pool holding only the CA certificate. Do not modify it.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// Fingerprint returns "sha256-" and the first 32 hex digits of the SHA-256
// of the CA certificate: the default cluster id.
func (ca *CA) Fingerprint() string { return fingerprint(ca.cert) }

// DeriveKey derives a 32-byte secret shared by every holder of the CA,
// separated by label (HKDF-SHA256 over the CA private key). The session
// mesh uses it to MAC session ids.
func (ca *CA) DeriveKey(label string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: derive key: %w", err)
	}
	k, err := hkdf.Key(sha256.New, der, ca.cert.Raw, "meshgate "+label, 32)
	if err != nil {
		return nil, fmt.Errorf("pki: derive key: %w", err)
	}
	return k, nil
}

// IssueNode issues a node certificate for name, valid for validity
// (DefaultNodeValidity if <= 0), usable as TLS server and client. The name
// goes in the CN and, with ips, in the SANs.
func (ca *CA) IssueNode(name string, ips []net.IP, validity time.Duration) (*tls.Certificate, error) {
	if name == "" {
		return nil, errors.New("pki: empty node name")
	}
	if validity <= 0 {
		validity = DefaultNodeValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate node key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: issue node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse node certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// VerifyPeer checks that a peer's certificate chain was issued by the CA for
// TLS use and returns the node name (CN). No host name is checked: any
// certificate from the cluster CA identifies a cluster member, and the name
// is compared with the peer's Hello by the caller.
func (ca *CA) VerifyPeer(rawCerts [][]byte) (string, error) {
	return verifyChain(ca.pool, rawCerts)
}

// verifyChain verifies rawCerts (leaf first) against roots and returns the
// leaf's CN.
func verifyChain(roots *x509.CertPool, rawCerts [][]byte) (string, error) {
	if len(rawCerts) == 0 {
		return "", errors.New("pki: no peer certificate")
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return "", fmt.Errorf("pki: parse peer certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, raw := range rawCerts[1:] {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return "", fmt.Errorf("pki: parse peer chain: %w", err)
		}
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return "", fmt.Errorf("pki: verify peer: %w", err)
	}
	return leaf.Subject.CommonName, nil
}

// NodeCert keeps a node certificate fresh: Get re-issues it once half of
// its validity has passed, or as soon as another CA signs (a rotation). It
// is safe for concurrent use.
type NodeCert struct {
	signer   func() *CA
	name     string
	ips      []net.IP
	validity time.Duration

	mu     sync.Mutex
	cert   *tls.Certificate
	issuer *CA
}

// NewNodeCert issues a first certificate for name and returns the renewer.
func (ca *CA) NewNodeCert(name string, ips []net.IP, validity time.Duration) (*NodeCert, error) {
	return newNodeCert(func() *CA { return ca }, name, ips, validity)
}

func newNodeCert(signer func() *CA, name string, ips []net.IP, validity time.Duration) (*NodeCert, error) {
	if validity <= 0 {
		validity = DefaultNodeValidity
	}
	nc := &NodeCert{signer: signer, name: name, ips: ips, validity: validity}
	if _, err := nc.Get(); err != nil {
		return nil, err
	}
	return nc, nil
}

// Get returns the current certificate, re-issuing it past half-life or
// when the signing CA changed. If re-issuing fails the old certificate is
// returned while still valid.
func (nc *NodeCert) Get() (*tls.Certificate, error) {
	ca := nc.signer()
	nc.mu.Lock()
	defer nc.mu.Unlock()
	now := time.Now()
	if nc.cert != nil && nc.issuer.cert.Equal(ca.cert) && now.Before(nc.cert.Leaf.NotAfter.Add(-nc.validity/2)) {
		return nc.cert, nil
	}
	c, err := ca.IssueNode(nc.name, nc.ips, nc.validity)
	if err != nil {
		if nc.cert != nil && now.Before(nc.cert.Leaf.NotAfter) {
			return nc.cert, nil
		}
		return nil, err
	}
	nc.cert, nc.issuer = c, ca
	return c, nil
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}
