package tls12

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
)

// verifySKE checks a ServerKeyExchange signature with the leaf's key.
func verifySKE(leaf *x509.Certificate, sigAlg uint16, signed, sig []byte) error {
	h, opts := signerOpts(sigAlg)
	digest := signed
	if h != 0 {
		hh := h.New()
		hh.Write(signed)
		digest = hh.Sum(nil)
	}
	switch pub := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return errors.New("bad ECDSA signature")
		}
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(pub, h, digest, sig, pss)
		}
		return rsa.VerifyPKCS1v15(pub, crypto.Hash(h), digest, sig)
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, signed, sig) {
			return errors.New("bad Ed25519 signature")
		}
	default:
		return errors.New("unknown key")
	}
	return nil
}
