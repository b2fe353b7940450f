package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"
)

// Spec describes a certificate to generate. The zero value is a
// self-signed serving certificate for no name with a fresh P-256 key,
// valid from an hour ago for a day.
type Spec struct {
	// Names are the DNS names; the first is also the subject's common name.
	Names []string
	// IPs are the IP address SANs.
	IPs []net.IP
	// CommonName overrides the subject's common name (a CA's, a client's).
	CommonName string
	// Key is the certificate's key; nil means a fresh ECDSA P-256 key.
	Key crypto.Signer
	// Issuer signs the certificate; nil means self-signed.
	Issuer *CA
	// IsCA makes it a certificate authority (KeyUsageCertSign).
	IsCA bool
	// Client adds the client-authentication extended key usage.
	Client bool
	// Serial is the serial number; 0 means a random one.
	Serial int64
	// NotBefore and NotAfter bound the validity; zero values mean an hour
	// ago and a day from NotBefore + 1h.
	NotBefore, NotAfter time.Time
}

// Cert is a generated certificate in the forms tests use.
type Cert struct {
	TLS     *tls.Certificate // chain of one, PrivateKey and Leaf set
	Leaf    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // "CERTIFICATE"
	KeyPEM  []byte // "PRIVATE KEY" (PKCS #8)
}

// Generate creates the certificate s describes.
func Generate(s Spec) (*Cert, error) {
	key := s.Key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		key = k
	}
	serial := big.NewInt(s.Serial)
	if s.Serial == 0 {
		r, err := rand.Int(rand.Reader, big.NewInt(1<<62))
		if err != nil {
			return nil, fmt.Errorf("serial: %w", err)
		}
		serial = r.Add(r, big.NewInt(1))
	}
	cn := s.CommonName
	if cn == "" && len(s.Names) > 0 {
		cn = s.Names[0]
	}
	nb, na := s.NotBefore, s.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = nb.Add(25 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: s.Names, IPAddresses: s.IPs,
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, isRSA := key.Public().(*rsa.PublicKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if s.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if s.IsCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageCertSign|x509.KeyUsageCRLSign, nil
	}
	parent, signer := tmpl, key
	if s.Issuer != nil {
		parent, signer = s.Issuer.Cert.Leaf, s.Issuer.Cert.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate %q: %w", cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate %q: %w", cn, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return &Cert{
		TLS:     &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Leaf:    leaf,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, nil
}

// NewCert is Generate for a test: it fails t on error.
func NewCert(t testing.TB, s Spec) *Cert {
	t.Helper()
	c, err := Generate(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// SelfSigned returns a fresh self-signed P-256 serving certificate for
// names (the first is the common name), with Leaf set.
func SelfSigned(t testing.TB, names ...string) *tls.Certificate {
	t.Helper()
	if len(names) == 0 {
		t.Fatal(errors.New("testkit.SelfSigned: no name"))
	}
	return NewCert(t, Spec{Names: names}).TLS
}

// CA is a throw-away certificate authority.
type CA struct {
	Cert *Cert
	Pool *x509.CertPool // trusts the CA alone
}

// NewCA returns a fresh CA named cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	c := NewCert(t, Spec{CommonName: cn, IsCA: true})
	pool := x509.NewCertPool()
	pool.AddCert(c.Leaf)
	return &CA{Cert: c, Pool: pool}
}

// Issue returns a serving certificate for names signed by the CA.
func (ca *CA) Issue(t testing.TB, names ...string) *tls.Certificate {
	t.Helper()
	return NewCert(t, Spec{Names: names, Issuer: ca}).TLS
}
