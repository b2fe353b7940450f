package tls12

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"net"
	"time"
)

// testClient is a scripted TLS 1.2 client built from this package's own
// primitives, for what real clients cannot be made to do: resume by
// session ID from Go, tamper with Finished or records, renegotiate. The
// interop tests against openssl and crypto/tls check the primitives
// independently.
type testClient struct {
	conn       net.Conn
	rr         recordReader
	out        *cipherState
	hs         []byte
	transcript hash.Hash
	suite      *suite

	// What the hello offers.
	suites    []uint16
	groups    []uint16
	sigAlgs   []uint16
	alpn      []string
	sni       string
	noEMS     bool
	sessionID []byte
	// sessionSecret is the master secret of the session sessionID names.
	sessionSecret []byte
	extraExt      []byte // raw extensions appended to the hello
	versions      []uint16
	fragment      int // split handshake records into fragments of this size

	// What the handshake produced.
	random, serverRandom []byte
	serverSessionID      []byte
	masterSecret         []byte
	resumed              bool
	serverALPN           string
	serverEMS            bool
	leaf                 *x509.Certificate

	// Tampering.
	badFinished bool
}

func newTestClient(c net.Conn) *testClient {
	tc := &testClient{conn: c,
		suites:  []uint16{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		groups:  []uint16{groupX25519, groupP256},
		sigAlgs: []uint16{sigECDSASHA256, sigRSAPSSSHA256, sigRSAPKCS1SHA256, sigEd25519},
	}
	tc.rr.r = c
	return tc
}

func (tc *testClient) helloMessage() []byte {
	var b builder
	tc.random = make([]byte, 32)
	rand.Read(tc.random)
	b.handshake(typeClientHello, func() {
		b.u16(version12)
		b.raw(tc.random)
		b.vec(1, func() { b.raw(tc.sessionID) })
		b.vec(2, func() {
			for _, s := range tc.suites {
				b.u16(s)
			}
			b.u16(scsvRenegotiation)
		})
		b.vec(1, func() { b.u8(0) })
		b.vec(2, func() {
			if tc.sni != "" {
				b.u16(extServerName)
				b.vec(2, func() { b.vec(2, func() { b.u8(0); b.vec(2, func() { b.raw([]byte(tc.sni)) }) }) })
			}
			b.u16(extSupportedGroups)
			b.vec(2, func() {
				b.vec(2, func() {
					for _, g := range tc.groups {
						b.u16(g)
					}
				})
			})
			b.u16(extECPointFormats)
			b.vec(2, func() { b.vec(1, func() { b.u8(0) }) })
			b.u16(extSignatureAlgorithms)
			b.vec(2, func() {
				b.vec(2, func() {
					for _, s := range tc.sigAlgs {
						b.u16(s)
					}
				})
			})
			if len(tc.alpn) > 0 {
				b.u16(extALPN)
				b.vec(2, func() {
					b.vec(2, func() {
						for _, p := range tc.alpn {
							b.vec(1, func() { b.raw([]byte(p)) })
						}
					})
				})
			}
			if !tc.noEMS {
				b.u16(extExtendedMaster)
				b.u16(0)
			}
			if tc.versions != nil {
				b.u16(extSupportedVersions)
				b.vec(2, func() {
					b.vec(1, func() {
						for _, v := range tc.versions {
							b.u16(v)
						}
					})
				})
			}
			b.raw(tc.extraExt)
		})
	})
	return b.b
}

func (tc *testClient) send(typ uint8, data []byte) error {
	var buf []byte
	if tc.fragment > 0 && typ == recordHandshake && tc.out == nil {
		for len(data) > 0 {
			n := min(tc.fragment, len(data))
			buf = appendRecords(buf, nil, typ, data[:n])
			data = data[n:]
		}
	} else {
		buf = appendRecords(nil, tc.out, typ, data)
	}
	_, err := tc.conn.Write(buf)
	return err
}

// readMsg returns the next handshake message of type want.
func (tc *testClient) readMsg(want uint8) ([]byte, error) {
	for {
		if len(tc.hs) >= 4 {
			n := int(tc.hs[1])<<16 | int(tc.hs[2])<<8 | int(tc.hs[3])
			if len(tc.hs) >= 4+n {
				msg := append([]byte(nil), tc.hs[:4+n]...)
				tc.hs = tc.hs[4+n:]
				if msg[0] != want {
					return nil, fmt.Errorf("got handshake message %d, want %d", msg[0], want)
				}
				return msg, nil
			}
		}
		typ, frag, err := tc.rr.next()
		if err != nil {
			return nil, err
		}
		switch typ {
		case recordHandshake:
			tc.hs = append(tc.hs, frag...)
		case recordAlert:
			return nil, &alertError{desc: frag[1], received: true}
		default:
			return nil, fmt.Errorf("record type %d", typ)
		}
	}
}

func (tc *testClient) readCCS(cs *cipherState) error {
	typ, frag, err := tc.rr.next()
	if err != nil {
		return err
	}
	if typ == recordAlert {
		return &alertError{desc: frag[1], received: true}
	}
	if typ != recordChangeCipherSpec {
		return fmt.Errorf("record %d, want CCS", typ)
	}
	tc.rr.in = cs
	return nil
}

// handshake runs a full or (when the server echoes sessionID) abbreviated
// handshake.
func (tc *testClient) handshake() error {
	hello := tc.helloMessage()
	if err := tc.send(recordHandshake, hello); err != nil {
		return err
	}
	sh, err := tc.readMsg(typeServerHello)
	if err != nil {
		return err
	}
	if err := tc.parseServerHello(sh); err != nil {
		return err
	}
	tc.transcript = tc.suite.newHash()
	tc.transcript.Write(hello)
	tc.transcript.Write(sh)
	if len(tc.sessionID) > 0 && bytes.Equal(tc.serverSessionID, tc.sessionID) {
		tc.masterSecret = tc.sessionSecret
		return tc.abbreviated()
	}
	return tc.full()
}

func (tc *testClient) parseServerHello(msg []byte) error {
	r := newReader(msg[4:])
	if r.u16() != version12 {
		return errors.New("server version")
	}
	tc.serverRandom = r.take(32)
	tc.serverSessionID = r.vec8()
	tc.suite = suiteByID(r.u16())
	r.u8()
	exts := newReader(r.vec16())
	if !r.done() || tc.suite == nil {
		return errors.New("malformed ServerHello")
	}
	for len(exts.b) > 0 {
		typ, data := exts.u16(), exts.vec16()
		switch typ {
		case extExtendedMaster:
			tc.serverEMS = true
		case extALPN:
			d := newReader(data)
			l := newReader(d.vec16())
			tc.serverALPN = string(l.vec8())
		}
	}
	return nil
}

func (tc *testClient) keys() (client, server *cipherState) {
	k := tc.suite.keyBlock(tc.masterSecret, tc.random, tc.serverRandom)
	client, _ = newCipherState(tc.suite, k.clientKey, k.clientIV)
	server, _ = newCipherState(tc.suite, k.serverKey, k.serverIV)
	return client, server
}

func (tc *testClient) finished(client bool) []byte {
	vd := tc.suite.finished(tc.masterSecret, tc.transcript.Sum(nil), client)
	if client && tc.badFinished {
		vd[0] ^= 1
	}
	var b builder
	b.handshake(typeFinished, func() { b.raw(vd) })
	return b.b
}

func (tc *testClient) readServerFinished() error {
	want := tc.finished(false)
	got, err := tc.readMsg(typeFinished)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("server Finished does not verify")
	}
	tc.transcript.Write(got)
	return nil
}

func (tc *testClient) full() error {
	cert, err := tc.readMsg(typeCertificate)
	if err != nil {
		return err
	}
	tc.transcript.Write(cert)
	cr := newReader(cert[4:])
	list := newReader(cr.vec24())
	if tc.leaf, err = x509.ParseCertificate(list.vec24()); err != nil {
		return err
	}
	ske, err := tc.readMsg(typeServerKeyExchange)
	if err != nil {
		return err
	}
	tc.transcript.Write(ske)
	sr := newReader(ske[4:])
	sr.u8()
	group := sr.u16()
	serverPub := sr.vec8()
	paramsLen := 1 + 2 + 1 + len(serverPub)
	sigAlg := sr.u16()
	sig := sr.vec16()
	if !sr.done() {
		return errors.New("malformed ServerKeyExchange")
	}
	if err := verifySKE(tc.leaf, sigAlg, append(append(append([]byte(nil), tc.random...), tc.serverRandom...), ske[4:4+paramsLen]...), sig); err != nil {
		return err
	}
	shd, err := tc.readMsg(typeServerHelloDone)
	if err != nil {
		return err
	}
	tc.transcript.Write(shd)
	curve := curveFor(group)
	key, _ := curve.GenerateKey(rand.Reader)
	peer, err := curve.NewPublicKey(serverPub)
	if err != nil {
		return err
	}
	pms, err := key.ECDH(peer)
	if err != nil {
		return err
	}
	var b builder
	b.handshake(typeClientKeyExchange, func() { b.vec(1, func() { b.raw(key.PublicKey().Bytes()) }) })
	tc.transcript.Write(b.b)
	if tc.noEMS {
		tc.masterSecret = tc.suite.legacyMasterSecret(pms, tc.random, tc.serverRandom)
	} else {
		tc.masterSecret = tc.suite.extendedMasterSecret(pms, tc.transcript.Sum(nil))
	}
	if err := tc.send(recordHandshake, b.b); err != nil {
		return err
	}
	client, server := tc.keys()
	if err := tc.send(recordChangeCipherSpec, []byte{1}); err != nil {
		return err
	}
	tc.out = client
	fin := tc.finished(true)
	tc.transcript.Write(fin)
	if err := tc.send(recordHandshake, fin); err != nil {
		return err
	}
	if err := tc.readCCS(server); err != nil {
		return err
	}
	return tc.readServerFinished()
}

func (tc *testClient) abbreviated() error {
	tc.resumed = true
	client, server := tc.keys()
	if err := tc.readCCS(server); err != nil {
		return err
	}
	if err := tc.readServerFinished(); err != nil {
		return err
	}
	if err := tc.send(recordChangeCipherSpec, []byte{1}); err != nil {
		return err
	}
	tc.out = client
	fin := tc.finished(true)
	tc.transcript.Write(fin)
	return tc.send(recordHandshake, fin)
}

// readApp reads one application data record (or the alert that came
// instead).
func (tc *testClient) readApp() ([]byte, error) {
	_ = tc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, frag, err := tc.rr.next()
	if err != nil {
		return nil, err
	}
	if typ == recordAlert {
		return nil, &alertError{desc: frag[1], received: true}
	}
	if typ != recordApplicationData {
		return nil, fmt.Errorf("record type %d", typ)
	}
	return append([]byte(nil), frag...), nil
}

var _ = ecdh.X25519
