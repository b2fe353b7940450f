package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Keys of the mesh CA material, as file names in a --mesh-dir and as keys
// of the Kubernetes Secret. Only ca.crt and ca.key are required; the others
// are written by the first rotation (Rotate) and kept from then on.
const (
	// TrustFile holds the PEM certificates of every CA whose node
	// certificates are accepted: the signing CA and, during a rotation,
	// the other one. Absent: only ca.crt.
	TrustFile = "trust.crt"
	// NextCertFile and NextKeyFile hold the CA a rotation is introducing
	// while it is trusted but does not sign yet.
	NextCertFile = "next.crt"
	NextKeyFile  = "next.key"
	// ClusterIDFile holds the cluster id, kept across rotations. Absent:
	// the fingerprint of ca.crt.
	ClusterIDFile = "cluster-id"
	// SessionIDKeyFile holds the 32-byte session-id MAC key, kept across
	// rotations so sessions issued before one still resume. Absent: derived
	// from the CA key (DeriveKey("session-id-mac")).
	SessionIDKeyFile = "session-id.key"
)

// materialFiles are every key of a Material, in the order they are
// written.
var materialFiles = []string{TrustFile, NextCertFile, NextKeyFile, ClusterIDFile, SessionIDKeyFile, KeyFile, CertFile}

// Material is the mesh CA material by file (Secret key) name: what a
// --mesh-dir or the mesh CA Secret holds. It is a plain value; Parse checks
// it.
type Material map[string][]byte

// Phase is where a CA rotation stands (see Rotate).
type Phase string

// Rotation phases, in order; PhaseStable follows PhaseSignNew.
const (
	// PhaseStable: one CA signs and is the only one trusted.
	PhaseStable Phase = "stable"
	// PhaseTrustNew: the new CA is trusted beside the old, which still
	// signs. Every replica must have loaded this before the next step, so
	// none refuses a certificate of the new CA.
	PhaseTrustNew Phase = "trust-new"
	// PhaseSignNew: the new CA signs; the old is still trusted, so
	// certificates issued before keep working while replicas re-issue
	// theirs. Every replica must have re-issued before the next step.
	PhaseSignNew Phase = "sign-new"
)

// Bundle is a parsed, consistent set of mesh CA material: the CA that
// signs this replica's node certificate, the CAs whose certificates are
// trusted, the cluster id and the session-id MAC key. It is immutable.
type Bundle struct {
	signing    *CA
	trusted    []*x509.Certificate
	pool       *x509.CertPool
	clusterID  string
	sessionKey []byte
	phase      Phase
}

// Parse checks m and returns its Bundle. The signing CA must be among the
// trusted ones; a next CA must be trusted too and parse with its key.
func (m Material) Parse() (*Bundle, error) {
	ca, err := ParseCA(m[CertFile], m[KeyFile])
	if err != nil {
		return nil, err
	}
	b := &Bundle{signing: ca, pool: x509.NewCertPool(), phase: PhaseStable}
	if trust := m[TrustFile]; len(trust) > 0 {
		if b.trusted, err = parseCerts(trust); err != nil {
			return nil, fmt.Errorf("pki: %s: %w", TrustFile, err)
		}
	} else {
		b.trusted = []*x509.Certificate{ca.cert}
	}
	if !containsCert(b.trusted, ca.cert) {
		return nil, fmt.Errorf("pki: %s does not hold the signing CA %s", TrustFile, CertFile)
	}
	for _, c := range b.trusted {
		if !c.IsCA {
			return nil, fmt.Errorf("pki: %s: %q is not a CA", TrustFile, c.Subject.CommonName)
		}
		b.pool.AddCert(c)
	}
	if len(m[NextCertFile]) > 0 || len(m[NextKeyFile]) > 0 {
		next, err := ParseCA(m[NextCertFile], m[NextKeyFile])
		if err != nil {
			return nil, fmt.Errorf("pki: next CA: %w", err)
		}
		if !containsCert(b.trusted, next.cert) {
			return nil, fmt.Errorf("pki: %s does not hold the next CA", TrustFile)
		}
		b.phase = PhaseTrustNew
	} else if len(b.trusted) > 1 {
		b.phase = PhaseSignNew
	}
	b.clusterID = string(bytes.TrimSpace(m[ClusterIDFile]))
	if b.clusterID == "" {
		b.clusterID = ca.Fingerprint()
	}
	if k := m[SessionIDKeyFile]; len(k) > 0 {
		if len(k) != 32 {
			return nil, fmt.Errorf("pki: %s: %d bytes, want 32", SessionIDKeyFile, len(k))
		}
		b.sessionKey = slices.Clone(k)
	} else if b.sessionKey, err = ca.DeriveKey("session-id-mac"); err != nil {
		return nil, err
	}
	return b, nil
}

// BundleOf is the Bundle of a lone CA: it signs, only it is trusted.
func BundleOf(ca *CA) (*Bundle, error) {
	crt, key := ca.PEM()
	return Material{CertFile: crt, KeyFile: key}.Parse()
}

// Signing returns the CA that issues this replica's node certificate.
func (b *Bundle) Signing() *CA { return b.signing }

// ClusterID returns the cluster id, the same before, during and after a
// rotation.
func (b *Bundle) ClusterID() string { return b.clusterID }

// SessionIDKey returns the session-id MAC key. It is secret.
func (b *Bundle) SessionIDKey() []byte { return b.sessionKey }

// Phase returns where the rotation stands.
func (b *Bundle) Phase() Phase { return b.phase }

// Trusted returns the fingerprints (as CA.Fingerprint) of the trusted CAs.
func (b *Bundle) Trusted() []string {
	out := make([]string, len(b.trusted))
	for i, c := range b.trusted {
		out[i] = fingerprint(c)
	}
	return out
}

// Generation names the bundle's trust state: the signing CA's fingerprint
// and the trusted ones'. Two replicas with the same generation accept the
// same certificates and issue from the same CA.
func (b *Bundle) Generation() string {
	h := sha256.New()
	h.Write(b.signing.cert.Raw)
	for _, c := range b.trusted {
		h.Write(c.Raw)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// VerifyPeer checks a peer's chain against the trusted CAs and returns its
// node name (CN), as CA.VerifyPeer does for one CA.
func (b *Bundle) VerifyPeer(rawCerts [][]byte) (string, error) {
	return verifyChain(b.pool, rawCerts)
}

// Rotate returns the material after the next rotation step, and the phase
// it enters:
//
//	stable    → trust-new: a new CA is generated and trusted beside the old
//	trust-new → sign-new:  the new CA signs, both stay trusted
//	sign-new  → stable:    the old CA is no longer trusted
//
// Its first step also pins the cluster id and the session-id MAC key
// (derived from the old CA key until then), so that neither changes with
// the CA. Between two steps every replica must have loaded the material
// (Identity.Update; see docs/security.md). m is not modified.
func Rotate(m Material) (Material, Phase, error) {
	b, err := m.Parse()
	if err != nil {
		return nil, "", err
	}
	out := Material{}
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	out[ClusterIDFile] = []byte(b.clusterID)
	out[SessionIDKeyFile] = slices.Clone(b.sessionKey)
	switch b.phase {
	case PhaseStable:
		next, err := NewCA(b.signing.cert.Subject.CommonName)
		if err != nil {
			return nil, "", err
		}
		crt, key := next.PEM()
		out[NextCertFile], out[NextKeyFile] = crt, key
		trust := slices.Clone(m[CertFile])
		if !bytes.HasSuffix(trust, []byte("\n")) {
			trust = append(trust, '\n')
		}
		out[TrustFile] = append(trust, crt...)
		return out, PhaseTrustNew, nil
	case PhaseTrustNew:
		out[CertFile], out[KeyFile] = out[NextCertFile], out[NextKeyFile]
		delete(out, NextCertFile)
		delete(out, NextKeyFile)
		return out, PhaseSignNew, nil
	default: // PhaseSignNew
		out[TrustFile] = slices.Clone(m[CertFile])
		return out, PhaseStable, nil
	}
}

// LoadMaterial reads the material files present in dir; ca.crt and ca.key
// are required.
func LoadMaterial(dir string) (Material, error) {
	m := Material{}
	for _, name := range materialFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case err == nil:
			m[name] = b
		case errors.Is(err, os.ErrNotExist) && name != CertFile && name != KeyFile:
		default:
			return nil, fmt.Errorf("pki: %w", err)
		}
	}
	return m, nil
}

// WriteMaterial replaces the material in dir with m: each file is written
// to a temporary name and renamed over the old one (keys 0600, the rest
// 0644); files m does not hold are removed. The signing pair is written
// last, so a replica reloading in between sees the previous signing CA
// with the new trust, which Parse accepts or refuses as a whole.
func WriteMaterial(dir string, m Material) error {
	for _, name := range materialFiles {
		path := filepath.Join(dir, name)
		data, ok := m[name]
		if !ok {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("pki: %w", err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if name == KeyFile || name == NextKeyFile || name == SessionIDKeyFile {
			mode = 0o600
		}
		tmp := path + ".tmp"
		_ = os.Remove(tmp)
		if err := writeNew(tmp, data, mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(list, func(x *x509.Certificate) bool { return x.Equal(c) })
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "sha256-" + hex.EncodeToString(sum[:16])
}
