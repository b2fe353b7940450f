package harness

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// PKI is the demo certificate set hack/certs.sh writes.
type PKI struct {
	Dir        string
	CACert     string // ca.crt
	ServerCert string // server.crt (RSA-2048, SAN = hosts)
	ServerKey  string // server.key
	SecretYAML string // kubernetes.io/tls Secret "echo-tls" in "default"
}

// PKIOptions vary what MakePKIWith asks hack/certs.sh for. The zero value
// is MakePKI's: an RSA-2048 server key in the Secret "echo-tls".
type PKIOptions struct {
	// KeyType is the server key: "rsa" (RSA-2048) or "ecdsa" (P-256); ""
	// means rsa.
	KeyType string
	// SecretName names the Secret in secret.yaml; "" means echo-tls.
	SecretName string
}

// MakePKI runs hack/certs.sh (real openssl) into dir for hosts.
func MakePKI(dir string, hosts ...string) (*PKI, error) {
	return MakePKIWith(PKIOptions{}, dir, hosts...)
}

// MakePKIWith is MakePKI with the key type and Secret name of o.
func MakePKIWith(o PKIOptions, dir string, hosts ...string) (*PKI, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "certs.sh"), append([]string{dir}, hosts...)...)
	cmd.Env = os.Environ()
	if o.KeyType != "" {
		cmd.Env = append(cmd.Env, "KEY_TYPE="+o.KeyType)
	}
	if o.SecretName != "" {
		cmd.Env = append(cmd.Env, "SECRET_NAME="+o.SecretName)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hack/certs.sh: %w\n%s", err, out)
	}
	return &PKI{
		Dir:        dir,
		CACert:     filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
		SecretYAML: filepath.Join(dir, "secret.yaml"),
	}, nil
}

// Pool returns a cert pool holding the PKI's CA.
func (p *PKI) Pool() (*x509.CertPool, error) {
	b, err := os.ReadFile(p.CACert)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no certificate in %s", p.CACert)
	}
	return pool, nil
}

// ClientConfig returns a TLS client configuration for Host that trusts the
// PKI's CA, pinned to version (tls.VersionTLS12 or tls.VersionTLS13), with a
// fresh session cache of one entry per server name. Sharing the returned
// config across connections is what makes them try to resume.
func (p *PKI) ClientConfig(version uint16) (*tls.Config, error) {
	pool, err := p.Pool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		ServerName:         Host,
		RootCAs:            pool,
		MinVersion:         version,
		MaxVersion:         version,
		ClientSessionCache: tls.NewLRUClientSessionCache(16),
		NextProtos:         []string{"http/1.1"},
	}, nil
}
