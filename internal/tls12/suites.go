package tls12

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// Cipher suite numbers (IANA TLS Cipher Suites registry) of the suites this
// package implements: ECDHE key exchange (RFC 8422) with an AEAD cipher
// (AES-GCM, RFC 5288; ChaCha20-Poly1305, RFC 7905).
const (
	TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256       uint16 = 0xc02b
	TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384       uint16 = 0xc02c
	TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256         uint16 = 0xc02f
	TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384         uint16 = 0xc030
	TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256   uint16 = 0xcca8
	TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 uint16 = 0xcca9

	// Signalling values (not negotiable suites).
	scsvRenegotiation uint16 = 0x00ff // TLS_EMPTY_RENEGOTIATION_INFO_SCSV, RFC 5746
	scsvFallback      uint16 = 0x5600 // TLS_FALLBACK_SCSV, RFC 7507
)

// Named groups (RFC 8422, RFC 7748).
const (
	groupP256   uint16 = 23
	groupX25519 uint16 = 29
)

// suite describes one implemented cipher suite.
type suite struct {
	id uint16
	// ecdsa is true for ECDHE_ECDSA suites (ECDSA or Ed25519 certificate),
	// false for ECDHE_RSA.
	ecdsa bool
	// keyLen is the AEAD key length; ivLen the fixed IV length from the
	// key block (4 for GCM's salt, 12 for ChaCha20-Poly1305's IV).
	keyLen, ivLen int
	// explicitNonce is the per-record nonce carried in the record (8 for
	// GCM, 0 for ChaCha20-Poly1305).
	explicitNonce int
	prfHash       crypto.Hash // SHA-256 or SHA-384
	chacha        bool
}

var suites = []*suite{
	{id: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ecdsa: true, keyLen: 16, ivLen: 4, explicitNonce: 8, prfHash: crypto.SHA256},
	{id: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, keyLen: 16, ivLen: 4, explicitNonce: 8, prfHash: crypto.SHA256},
	{id: TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, ecdsa: true, keyLen: 32, ivLen: 4, explicitNonce: 8, prfHash: crypto.SHA384},
	{id: TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, keyLen: 32, ivLen: 4, explicitNonce: 8, prfHash: crypto.SHA384},
	{id: TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, ecdsa: true, keyLen: 32, ivLen: 12, prfHash: crypto.SHA256, chacha: true},
	{id: TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, keyLen: 32, ivLen: 12, prfHash: crypto.SHA256, chacha: true},
}

// suiteByID returns the implemented suite with that number, or nil.
func suiteByID(id uint16) *suite {
	for _, s := range suites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// SupportedSuites returns the numbers of the implemented cipher suites in
// the server's default preference order.
func SupportedSuites() []uint16 {
	out := make([]uint16, len(suites))
	for i, s := range suites {
		out[i] = s.id
	}
	return out
}

func (s *suite) newHash() hash.Hash {
	if s.prfHash == crypto.SHA384 {
		return sha512.New384()
	}
	return sha256.New()
}

// aead builds the record protection for one direction.
func (s *suite) aead(key []byte) (cipher.AEAD, error) {
	if s.chacha {
		return chacha20poly1305.New(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
