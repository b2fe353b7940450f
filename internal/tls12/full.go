package tls12

import (
	"crypto/ecdh"
	"errors"
	"fmt"
)

// full runs a full handshake (RFC 5246 section 7.3, figure 1) with an
// ECDHE key exchange (RFC 8422): ServerHello, Certificate,
// ServerKeyExchange, ServerHelloDone; then the client's ClientKeyExchange,
// ChangeCipherSpec and Finished; then ours.
func (hs *handshakeState) full() error {
	c, h := hs.c, hs.hello
	pr, err := c.cfg.negotiate(h)
	if err != nil {
		if errors.Is(err, errNoOverlap) {
			return &alertError{desc: alertHandshakeFailure, err: err}
		}
		return &alertError{desc: alertInternalError, err: err}
	}
	hs.suite, hs.alpn, hs.group = pr.suite, pr.alpn, pr.group
	// Only sessions with Extended Master Secret are resumable, so only they
	// get an id (an empty one tells the client not to cache, RFC 5246
	// section 7.4.1.3).
	if h.ems && c.cfg.Sessions != nil {
		hs.sessionID = c.cfg.Sessions.NewSessionID(h.ServerName)
		if len(hs.sessionID) > 32 {
			hs.sessionID = nil
		}
	}
	hs.transcript = hs.suite.newHash()
	hs.transcript.Write(h.raw)
	key, err := curveFor(pr.group).GenerateKey(c.cfg.rand())
	if err != nil {
		return &alertError{desc: alertInternalError, err: err}
	}
	var b builder
	hs.writeServerHello(&b, true)
	hs.writeCertificate(&b)
	if err := hs.writeServerKeyExchange(&b, pr, key.PublicKey().Bytes()); err != nil {
		return err
	}
	b.handshake(typeServerHelloDone, func() {})
	hs.transcript.Write(b.b)
	if err := hs.queueHandshake(b.b); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	if err := hs.readClientKeyExchange(key); err != nil {
		return err
	}
	clientCS, serverCS, err := hs.cipherStates()
	if err != nil {
		return err
	}
	if err := c.readCCS(clientCS); err != nil {
		return err
	}
	if err := hs.readClientFinished(); err != nil {
		return err
	}
	// The client's Finished verified: the session is established on our
	// side. Store it before our Finished goes out, so that its replication
	// starts before the client can possibly offer it to another replica.
	if hs.sessionID != nil {
		c.cfg.Sessions.Put(hs.sessionID, h.ServerName, newSessionState(hs.suite, hs.masterSecret, c.cfg.now()))
	}
	c.queueCCS(serverCS)
	if err := hs.queueHandshake(hs.finishedMessage(false)); err != nil {
		return err
	}
	return c.flush()
}

// writeCertificate appends the Certificate message (RFC 5246 section
// 7.4.2): the chain as configured, leaf first.
func (hs *handshakeState) writeCertificate(b *builder) {
	b.handshake(typeCertificate, func() {
		b.vec(3, func() {
			for _, der := range hs.c.cfg.Certificate.Certificate {
				b.vec(3, func() { b.raw(der) })
			}
		})
	})
}

// writeServerKeyExchange appends the ServerKeyExchange of RFC 8422 section
// 5.4: ServerECDHParams (named_curve, group, point) signed together with
// both randoms.
func (hs *handshakeState) writeServerKeyExchange(b *builder, pr params, pub []byte) error {
	var params builder
	params.u8(3) // ECCurveType named_curve
	params.u16(pr.group)
	params.vec(1, func() { params.raw(pub) })
	p, err := hs.c.cfg.prepared()
	if err != nil {
		return &alertError{desc: alertInternalError, err: err}
	}
	signed := make([]byte, 0, 2*randomLen+len(params.b))
	signed = append(append(append(signed, hs.hello.random...), hs.serverRandom...), params.b...)
	hashFn, opts := signerOpts(pr.sigAlg)
	digest := signed
	if hashFn != 0 {
		hh := hashFn.New()
		hh.Write(signed)
		digest = hh.Sum(nil)
	}
	sig, err := p.signer.Sign(hs.c.cfg.rand(), digest, opts)
	if err != nil {
		return &alertError{desc: alertInternalError, err: fmt.Errorf("sign ServerKeyExchange: %w", err)}
	}
	b.handshake(typeServerKeyExchange, func() {
		b.raw(params.b)
		b.u16(pr.sigAlg)
		b.vec(2, func() { b.raw(sig) })
	})
	return nil
}

// readClientKeyExchange reads the client's ECDH public value (RFC 8422
// section 5.7), computes the premaster secret and the master secret:
// extended (RFC 7627) when both sides agreed on it.
func (hs *handshakeState) readClientKeyExchange(key *ecdh.PrivateKey) error {
	msg, err := hs.c.readHandshake(typeClientKeyExchange)
	if err != nil {
		return err
	}
	point, err := parseClientKeyExchange(msg)
	if err != nil {
		return &alertError{desc: alertDecodeError, err: err}
	}
	peer, err := key.Curve().NewPublicKey(point)
	if err != nil {
		return &alertError{desc: alertIllegalParameter, err: err}
	}
	pms, err := key.ECDH(peer)
	if err != nil {
		return &alertError{desc: alertIllegalParameter, err: err}
	}
	hs.transcript.Write(msg)
	if hs.hello.ems {
		hs.masterSecret = hs.suite.extendedMasterSecret(pms, hs.transcript.Sum(nil))
	} else {
		hs.masterSecret = hs.suite.legacyMasterSecret(pms, hs.hello.random, hs.serverRandom)
	}
	clear(pms)
	return nil
}

// parseClientKeyExchange returns the ECPoint of a ClientKeyExchange
// message (header included): opaque point<1..2^8-1>, nothing after it.
func parseClientKeyExchange(msg []byte) ([]byte, error) {
	if len(msg) < 4 || msg[0] != typeClientKeyExchange {
		return nil, errors.New("tls12: not a client_key_exchange message")
	}
	r := newReader(msg[1:])
	body := newReader(r.vec24())
	if !r.done() {
		return nil, errors.New("tls12: client_key_exchange length")
	}
	point := body.vec8()
	if !body.done() || len(point) == 0 {
		return nil, errors.New("tls12: malformed client_key_exchange")
	}
	return point, nil
}
