package tls12

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// SessionCache stores the sessions of one TLS host for session-ID
// resumption (RFC 5246 section 7.3). The session layer implements it; this
// package never interprets ids, and treats state as opaque bytes it made.
//
// Implementations must be safe for concurrent use. They own the binding of
// a session to what it was issued for: Get must return nil unless id was
// issued by NewSessionID, stored by Put under the same serverName (and the
// same certificate and policy, which the implementation knows), and is
// neither expired nor revoked.
type SessionCache interface {
	// NewSessionID returns the session ID (1 to 32 bytes) a full handshake
	// announces in its ServerHello, or nil to announce none (the session
	// is then not resumable). It is called before the handshake completes.
	NewSessionID(serverName string) []byte
	// Put stores the session of a completed full handshake under id. state
	// is secret; Put takes ownership of it.
	Put(id []byte, serverName string, state []byte)
	// Get returns the state stored under id for serverName, or nil. A
	// miss of any kind (unknown, forged, expired, revoked, other binding,
	// refused for client) is nil, never an error. client is the remote
	// address of the connection asking (nil when unknown), for
	// implementations that bound what one client may make them do. The
	// caller does not modify the result.
	Get(id []byte, serverName string, client net.Addr) []byte
}

// Config configures the server side of one TLS host. A Config may be
// shared by any number of connections and must not be modified after its
// first use.
type Config struct {
	// Certificate is the host's chain and key; required. The key must be a
	// crypto.Signer with an RSA, ECDSA (P-256, P-384, P-521) or Ed25519
	// public key.
	Certificate *tls.Certificate
	// CipherSuites are the TLS 1.2 suites the host allows, in any order;
	// only those this package implements (SupportedSuites) and that fit the
	// certificate's key are used. Nil means all implemented suites.
	CipherSuites []uint16
	// Groups are the key-exchange groups the host allows (a set); X25519
	// and P-256 are implemented. Nil means both.
	Groups []tls.CurveID
	// NextProtos are the ALPN protocols in server preference order.
	NextProtos []string
	// Sessions caches sessions for resumption; nil disables it (full
	// handshakes announce no session ID).
	Sessions SessionCache
	// VerifyConnection, if not nil, is called at the end of every
	// successful handshake, full or resumed, with its connection state (as
	// crypto/tls's Config.VerifyConnection is); a non-nil error fails the
	// handshake with a handshake_failure alert. The session layer chains it
	// to count handshakes.
	VerifyConnection func(tls.ConnectionState) error
	// ServesTLS13 says the host also speaks TLS 1.3 (its policy's maximum
	// version). ServerHello.random then carries the RFC 8446 section 4.1.3
	// downgrade sentinel, as every TLS 1.3 server negotiating TLS 1.2 must.
	ServesTLS13 bool
	// Rand is the source of randomness; nil means crypto/rand.
	Rand io.Reader
	// Time returns the current time; nil means time.Now.
	Time func() time.Time

	once sync.Once
	prep *prepared
	perr error
}

// prepared is what a Config resolves to on first use.
type prepared struct {
	signer crypto.Signer
	key    keyKind
	// curve is the named group of an ECDSA key (RFC 8422 section 5.1.1:
	// a TLS 1.2 client's supported_groups also bounds the curve of the
	// server's ECDSA key).
	curve  uint16
	suites []*suite // allowed and usable with the key, preference order
	groups []uint16 // allowed, preference order
}

type keyKind uint8

const (
	keyRSA keyKind = iota + 1
	keyECDSA
	keyEd25519
)

// ErrUnsupportedKey is returned for certificates whose key this package
// cannot sign with.
var ErrUnsupportedKey = errors.New("tls12: certificate key is not an RSA, ECDSA or Ed25519 crypto.Signer")

func (c *Config) prepared() (*prepared, error) {
	c.once.Do(func() { c.prep, c.perr = c.prepare() })
	return c.prep, c.perr
}

func (c *Config) prepare() (*prepared, error) {
	if c.Certificate == nil || len(c.Certificate.Certificate) == 0 {
		return nil, errors.New("tls12: Config.Certificate is required")
	}
	signer, ok := c.Certificate.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, ErrUnsupportedKey
	}
	p := &prepared{signer: signer}
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		p.key = keyRSA
	case *ecdsa.PublicKey:
		p.key = keyECDSA
		switch pub.Curve {
		case elliptic.P256():
			p.curve = groupP256
		case elliptic.P384():
			p.curve = 24
		case elliptic.P521():
			p.curve = 25
		default:
			return nil, ErrUnsupportedKey
		}
	case ed25519.PublicKey:
		p.key = keyEd25519
	default:
		return nil, ErrUnsupportedKey
	}
	for _, s := range suites {
		if s.ecdsa != (p.key != keyRSA) {
			continue
		}
		if c.CipherSuites == nil || slices.Contains(c.CipherSuites, s.id) {
			p.suites = append(p.suites, s)
		}
	}
	for _, g := range []uint16{groupX25519, groupP256} {
		if c.Groups == nil || slices.Contains(c.Groups, tls.CurveID(g)) {
			p.groups = append(p.groups, g)
		}
	}
	return p, nil
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) now() time.Time {
	if c.Time != nil {
		return c.Time()
	}
	return time.Now()
}

// Usable reports whether the configuration can serve anyone: its key can
// sign and at least one cipher suite and group remain allowed.
func (c *Config) Usable() bool {
	p, err := c.prepared()
	return err == nil && len(p.suites) > 0 && len(p.groups) > 0
}

// params is what a full handshake negotiates.
type params struct {
	suite  *suite
	group  uint16
	sigAlg uint16
	alpn   string
}

var errNoOverlap = errors.New("tls12: no common cipher suite, group, signature algorithm or application protocol")

// CanServe reports whether a full handshake with h would find a cipher
// suite, group, signature algorithm and application protocol in common
// with this configuration. The server routes a Ticketless12 hello here
// only when it can, and leaves it to crypto/tls otherwise (CBC-only
// clients, P-384-only clients, SHA-1-only signatures, ALPN mismatch).
func (c *Config) CanServe(h *ClientHello) bool {
	_, err := c.negotiate(h)
	return err == nil
}

func (c *Config) negotiate(h *ClientHello) (params, error) {
	var pr params
	p, err := c.prepared()
	if err != nil {
		return pr, err
	}
	if h.hasPointFormats && !slices.Contains(h.pointFormats, 0) {
		return pr, errNoOverlap // uncompressed points only (RFC 8422 section 5.1.2)
	}
	if pr.suite = selectSuite(p.suites, h.suites); pr.suite == nil {
		return pr, errNoOverlap
	}
	for _, g := range p.groups {
		if slices.Contains(h.groups, g) {
			pr.group = g
			break
		}
	}
	if pr.group == 0 {
		return pr, errNoOverlap
	}
	if p.key == keyECDSA && !slices.Contains(h.groups, p.curve) {
		return pr, errNoOverlap
	}
	if pr.sigAlg = selectSigAlg(p, h.sigAlgs); pr.sigAlg == 0 {
		return pr, errNoOverlap
	}
	if len(h.ALPN) > 0 && len(c.NextProtos) > 0 {
		for _, s := range c.NextProtos {
			if slices.Contains(h.ALPN, s) {
				pr.alpn = s
				break
			}
		}
		if pr.alpn == "" {
			return pr, errNoOverlap
		}
	}
	return pr, nil
}

// selectSuite picks the server's preferred suite among those offered,
// except that a client listing a ChaCha20-Poly1305 suite before every
// AES-GCM one (a client without AES hardware says so this way) gets
// ChaCha20-Poly1305 when it is allowed.
func selectSuite(allowed []*suite, offered []uint16) *suite {
	chachaFirst := false
	for _, id := range offered {
		if s := suiteByID(id); s != nil {
			chachaFirst = s.chacha
			break
		}
	}
	var best *suite
	for _, s := range allowed {
		if !slices.Contains(offered, s.id) {
			continue
		}
		if chachaFirst && s.chacha {
			return s
		}
		if best == nil {
			best = s
		}
	}
	return best
}

// Signature schemes (RFC 8446 section 4.2.3 numbering, used by TLS 1.2 as
// SignatureAndHashAlgorithm).
const (
	sigRSAPKCS1SHA256 uint16 = 0x0401
	sigRSAPKCS1SHA384 uint16 = 0x0501
	sigRSAPKCS1SHA512 uint16 = 0x0601
	sigECDSASHA256    uint16 = 0x0403
	sigECDSASHA384    uint16 = 0x0503
	sigECDSASHA512    uint16 = 0x0603
	sigRSAPSSSHA256   uint16 = 0x0804
	sigRSAPSSSHA384   uint16 = 0x0805
	sigRSAPSSSHA512   uint16 = 0x0806
	sigEd25519        uint16 = 0x0807
)

// selectSigAlg picks the first scheme of the client's list that the key
// can make; for ECDSA the scheme naming the key's own curve comes first
// when offered. SHA-1 schemes are never used, so a client without
// signature_algorithms (whose default is SHA-1) gets none.
func selectSigAlg(p *prepared, offered []uint16) uint16 {
	k := p.key
	if k == keyECDSA {
		own := map[uint16]uint16{groupP256: sigECDSASHA256, 24: sigECDSASHA384, 25: sigECDSASHA512}[p.curve]
		if slices.Contains(offered, own) {
			return own
		}
	}
	for _, s := range offered {
		switch s {
		case sigRSAPKCS1SHA256, sigRSAPKCS1SHA384, sigRSAPKCS1SHA512, sigRSAPSSSHA256, sigRSAPSSSHA384, sigRSAPSSSHA512:
			if k == keyRSA {
				return s
			}
		case sigECDSASHA256, sigECDSASHA384, sigECDSASHA512:
			if k == keyECDSA {
				return s
			}
		case sigEd25519:
			if k == keyEd25519 {
				return s
			}
		}
	}
	return 0
}

// signerOpts returns the hash to apply and the options for crypto.Signer.
func signerOpts(sigAlg uint16) (crypto.Hash, crypto.SignerOpts) {
	var h crypto.Hash
	switch sigAlg {
	case sigRSAPKCS1SHA256, sigECDSASHA256, sigRSAPSSSHA256:
		h = crypto.SHA256
	case sigRSAPKCS1SHA384, sigECDSASHA384, sigRSAPSSSHA384:
		h = crypto.SHA384
	case sigRSAPKCS1SHA512, sigECDSASHA512, sigRSAPSSSHA512:
		h = crypto.SHA512
	case sigEd25519:
		return 0, crypto.Hash(0)
	}
	switch sigAlg {
	case sigRSAPSSSHA256, sigRSAPSSSHA384, sigRSAPSSSHA512:
		return h, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	return h, h
}

func curveFor(group uint16) ecdh.Curve {
	if group == groupP256 {
		return ecdh.P256()
	}
	return ecdh.X25519()
}
