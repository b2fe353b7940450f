package tls12

import (
	"crypto/hmac"
	"hash"
)

// Sizes fixed by RFC 5246.
const (
	masterSecretLen = 48
	finishedLen     = 12
	randomLen       = 32
)

// pHash fills out with P_hash(secret, seed) (RFC 5246 section 5):
// HMAC(secret, A(1) || seed) || HMAC(secret, A(2) || seed) || ...
// with A(0) = seed and A(i) = HMAC(secret, A(i-1)).
func pHash(newHash func() hash.Hash, out, secret []byte, seed ...[]byte) {
	mac := hmac.New(newHash, secret)
	for _, s := range seed {
		mac.Write(s)
	}
	a := mac.Sum(nil) // A(1)
	var block []byte
	for len(out) > 0 {
		mac.Reset()
		mac.Write(a)
		for _, s := range seed {
			mac.Write(s)
		}
		block = mac.Sum(block[:0])
		n := copy(out, block)
		out = out[n:]
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
}

// prf is the TLS 1.2 PRF with the suite's hash: P_hash(secret, label || seed).
func (s *suite) prf(out, secret []byte, label string, seed ...[]byte) {
	pHash(s.newHash, out, secret, append([][]byte{[]byte(label)}, seed...)...)
}

// extendedMasterSecret derives the master secret from the premaster secret
// and the session hash (the hash of the handshake messages up to and
// including ClientKeyExchange), RFC 7627 section 4.
func (s *suite) extendedMasterSecret(preMaster, sessionHash []byte) []byte {
	ms := make([]byte, masterSecretLen)
	s.prf(ms, preMaster, "extended master secret", sessionHash)
	return ms
}

// legacyMasterSecret derives the master secret of a handshake without
// Extended Master Secret (RFC 5246 section 8.1). Such sessions are never
// cached or resumed.
func (s *suite) legacyMasterSecret(preMaster, clientRandom, serverRandom []byte) []byte {
	ms := make([]byte, masterSecretLen)
	s.prf(ms, preMaster, "master secret", clientRandom, serverRandom)
	return ms
}

// keys holds the record keys derived from the key block (RFC 5246 section
// 6.3; AEAD suites have no MAC keys).
type keys struct {
	clientKey, serverKey []byte
	clientIV, serverIV   []byte
}

func (s *suite) keyBlock(masterSecret, clientRandom, serverRandom []byte) keys {
	n := 2*s.keyLen + 2*s.ivLen
	kb := make([]byte, n)
	s.prf(kb, masterSecret, "key expansion", serverRandom, clientRandom)
	var k keys
	k.clientKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	k.serverKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	k.clientIV, kb = kb[:s.ivLen], kb[s.ivLen:]
	k.serverIV = kb[:s.ivLen]
	return k
}

// finished computes verify_data (RFC 5246 section 7.4.9) for the transcript
// hash th; client selects the "client finished" label.
func (s *suite) finished(masterSecret, th []byte, client bool) []byte {
	label := "server finished"
	if client {
		label = "client finished"
	}
	out := make([]byte, finishedLen)
	s.prf(out, masterSecret, label, th)
	return out
}
