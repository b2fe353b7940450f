package tls12

import (
	"bytes"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"io"
)

// downgradeSentinel ends ServerHello.random when a TLS 1.3 server
// negotiates TLS 1.2 (RFC 8446 section 4.1.3).
var downgradeSentinel = []byte("DOWNGRD\x01")

// handshakeState is one server handshake in progress.
type handshakeState struct {
	c            *Conn
	hello        *ClientHello
	suite        *suite
	transcript   hash.Hash
	serverRandom []byte
	masterSecret []byte
	sessionID    []byte
	resumed      bool
	alpn         string
	group        uint16
}

// serverHandshake runs the whole handshake; called with in and out held.
func (c *Conn) serverHandshake() error {
	msg, err := c.readHandshake(typeClientHello)
	if err != nil {
		return c.fail(err)
	}
	c.in.rr.strictVersion = true
	hello := c.hello
	if hello == nil || !bytes.Equal(hello.raw, msg) {
		if hello, err = ParseClientHello(msg); err != nil {
			return c.fail(&alertError{desc: alertDecodeError, err: err})
		}
	}
	if err := checkHello(hello); err != nil {
		return c.fail(err)
	}
	hs := &handshakeState{c: c, hello: hello}
	if err := hs.newServerRandom(); err != nil {
		return c.fail(&alertError{desc: alertInternalError, err: err})
	}
	if s := hs.resumable(); s != nil {
		err = hs.resume(s)
	} else {
		err = hs.full()
	}
	if err != nil {
		return c.fail(err)
	}
	c.state = tls.ConnectionState{
		Version:                    tls.VersionTLS12,
		HandshakeComplete:          true,
		DidResume:                  hs.resumed,
		CipherSuite:                hs.suite.id,
		CurveID:                    tls.CurveID(hs.group),
		NegotiatedProtocol:         hs.alpn,
		NegotiatedProtocolIsMutual: true,
		ServerName:                 hello.ServerName,
	}
	if f := c.cfg.VerifyConnection; f != nil {
		if err := f(c.state); err != nil {
			return c.fail(&alertError{desc: alertHandshakeFailure, err: err})
		}
	}
	return nil
}

// checkHello refuses hellos this package must not answer: a TLS 1.3 offer
// (whose downgrade protection belongs to crypto/tls), a client whose
// highest version is not TLS 1.2, no null compression, and a non-empty
// renegotiation_info on an initial handshake (RFC 5746 section 3.6).
func checkHello(h *ClientHello) error {
	switch {
	case h.OffersTLS13():
		return &alertError{desc: alertProtocolVersion, err: errors.New("client offers TLS 1.3; not answered on the TLS 1.2 path")}
	case !h.offers12():
		return &alertError{desc: alertProtocolVersion, err: fmt.Errorf("client version %#04x", h.version)}
	case !h.nullCompression:
		return &alertError{desc: alertIllegalParameter, err: errors.New("null compression not offered")}
	case h.renegExt && len(h.renegInfo) != 0:
		return &alertError{desc: alertHandshakeFailure, err: errors.New("renegotiation_info not empty on the initial handshake")}
	}
	return nil
}

func (hs *handshakeState) newServerRandom() error {
	hs.serverRandom = make([]byte, randomLen)
	if _, err := io.ReadFull(hs.c.cfg.rand(), hs.serverRandom); err != nil {
		return err
	}
	if hs.c.cfg.ServesTLS13 {
		copy(hs.serverRandom[randomLen-len(downgradeSentinel):], downgradeSentinel)
	}
	return nil
}

// resumable returns the cached session the hello may resume, or nil. A
// session resumes only with Extended Master Secret on both handshakes
// (RFC 7627 section 5.3), with its cipher suite still offered by the
// client and allowed by the configuration.
func (hs *handshakeState) resumable() *sessionState {
	h, cfg := hs.hello, hs.c.cfg
	if cfg.Sessions == nil || len(h.sessionID) == 0 || !h.ems {
		return nil
	}
	p, err := cfg.prepared()
	if err != nil {
		return nil
	}
	s, ok := parseSessionState(cfg.Sessions.Get(h.sessionID, h.ServerName, hs.c.conn.RemoteAddr()))
	if !ok {
		return nil
	}
	for _, allowed := range p.suites {
		if allowed.id == s.suite.id {
			for _, offered := range h.suites {
				if offered == s.suite.id {
					return s
				}
			}
		}
	}
	return nil
}

// alpnFor selects the application protocol for a resumed handshake: ALPN
// is negotiated anew on every handshake (RFC 7301 section 3.1).
func (hs *handshakeState) alpnFor() (string, error) {
	h, cfg := hs.hello, hs.c.cfg
	if len(h.ALPN) == 0 || len(cfg.NextProtos) == 0 {
		return "", nil
	}
	for _, s := range cfg.NextProtos {
		for _, o := range h.ALPN {
			if s == o {
				return s, nil
			}
		}
	}
	return "", &alertError{desc: alertNoApplicationProtocol, err: errors.New("no common application protocol")}
}

// resume runs the abbreviated handshake (RFC 5246 section 7.3, figure 2):
// ServerHello, ChangeCipherSpec, Finished; then the client's
// ChangeCipherSpec and Finished.
func (hs *handshakeState) resume(s *sessionState) error {
	c := hs.c
	alpn, err := hs.alpnFor()
	if err != nil {
		return err
	}
	hs.suite, hs.alpn, hs.masterSecret, hs.resumed = s.suite, alpn, s.masterSecret, true
	hs.sessionID = hs.hello.sessionID
	hs.transcript = hs.suite.newHash()
	hs.transcript.Write(hs.hello.raw)
	var b builder
	hs.writeServerHello(&b, false)
	hs.transcript.Write(b.b)
	if err := hs.queueHandshake(b.b); err != nil {
		return err
	}
	clientCS, serverCS, err := hs.cipherStates()
	if err != nil {
		return err
	}
	c.queueCCS(serverCS)
	fin := hs.finishedMessage(false)
	hs.transcript.Write(fin)
	if err := hs.queueHandshake(fin); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	if err := c.readCCS(clientCS); err != nil {
		return err
	}
	return hs.readClientFinished()
}

// cipherStates derives both directions' record protection.
func (hs *handshakeState) cipherStates() (client, server *cipherState, err error) {
	k := hs.suite.keyBlock(hs.masterSecret, hs.hello.random, hs.serverRandom)
	if client, err = newCipherState(hs.suite, k.clientKey, k.clientIV); err != nil {
		return nil, nil, &alertError{desc: alertInternalError, err: err}
	}
	if server, err = newCipherState(hs.suite, k.serverKey, k.serverIV); err != nil {
		return nil, nil, &alertError{desc: alertInternalError, err: err}
	}
	return client, server, nil
}

// finishedMessage builds a Finished message over the transcript so far.
func (hs *handshakeState) finishedMessage(client bool) []byte {
	vd := hs.suite.finished(hs.masterSecret, hs.transcript.Sum(nil), client)
	var b builder
	b.handshake(typeFinished, func() { b.raw(vd) })
	return b.b
}

// readClientFinished reads the client's Finished and checks it in
// constant time (RFC 5246 section 7.4.9: decrypt_error on mismatch).
func (hs *handshakeState) readClientFinished() error {
	want := hs.finishedMessage(true)
	msg, err := hs.c.readHandshake(typeFinished)
	if err != nil {
		return err
	}
	if len(msg) != len(want) || !hmac.Equal(msg, want) {
		return &alertError{desc: alertDecryptError, err: errors.New("client Finished does not verify")}
	}
	hs.transcript.Write(msg)
	return nil
}

// writeServerHello appends the ServerHello. Extensions answer only what
// the client sent: renegotiation_info (RFC 5746), extended_master_secret
// (RFC 7627), ALPN (RFC 7301), and on full handshakes ec_point_formats
// (RFC 8422) and an empty server_name (RFC 6066 section 3, not on
// resumption).
func (hs *handshakeState) writeServerHello(b *builder, full bool) {
	h := hs.hello
	b.handshake(typeServerHello, func() {
		b.u16(version12)
		b.raw(hs.serverRandom)
		b.vec(1, func() { b.raw(hs.sessionID) })
		b.u16(hs.suite.id)
		b.u8(0) // null compression
		b.vec(2, func() {
			if h.renegExt || h.renegSCSV {
				b.u16(extRenegotiationInfo)
				b.vec(2, func() { b.u8(0) }) // empty renegotiated_connection
			}
			if h.ems {
				b.u16(extExtendedMaster)
				b.u16(0)
			}
			if hs.alpn != "" {
				b.u16(extALPN)
				b.vec(2, func() { b.vec(2, func() { b.vec(1, func() { b.raw([]byte(hs.alpn)) }) }) })
			}
			if full && h.hasPointFormats {
				b.u16(extECPointFormats)
				b.vec(2, func() { b.vec(1, func() { b.u8(0) }) })
			}
			if full && h.ServerName != "" {
				b.u16(extServerName)
				b.u16(0)
			}
		})
	})
}
