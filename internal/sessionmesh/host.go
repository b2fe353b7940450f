package sessionmesh

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/meshgate/meshgate/internal/tls12"
)

// Mode is how the sessions of a host resume.
type Mode uint8

const (
	// Stateful keeps session state in the cluster-wide store; the client
	// only holds an opaque id. The zero value.
	Stateful Mode = iota
	// TicketKeys seals the state into the ticket with cluster-wide,
	// rotated ticket keys; nothing is stored.
	TicketKeys
	// Off disables resumption: every handshake is a full one.
	Off
)

// String returns the mode's name as TLSPolicy spells it.
func (m Mode) String() string {
	switch m {
	case Stateful:
		return "Stateful"
	case TicketKeys:
		return "TicketKeys"
	case Off:
		return "Off"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultLifetime is a session's lifetime when Host.Lifetime is zero, the
// same as nginx's ssl_session_timeout.
const DefaultLifetime = 300 * time.Second

// MaxLifetime bounds the expiry of every record a peer sends (now +
// MaxLifetime) until this node has configured a host; from then on the
// longest lifetime configured bounds it (see checkRecord). It is the
// longest session lifetime a TLSPolicy may ask for.
const MaxLifetime = 24 * time.Hour

// Host is what the session layer needs to know about one TLS host. The data
// plane fills it from its own policy types for every tls.Config it builds;
// the session layer knows nothing else of hosts, certificates or policies.
//
// The binding inputs (Leaf, Policy, PolicyDigest) say what a session is
// bound to besides the exact SNI name of its handshake: a session resumes
// only on a host whose binding inputs are equal to those it was issued
// under (resuming on another virtual host must fail).
type Host struct {
	// Mode selects how sessions resume; the zero value is Stateful.
	Mode Mode
	// Lifetime bounds a session from the handshake that issued it; zero
	// means DefaultLifetime. It is checked again when the session resumes,
	// against the lifetime the host has then: shortening it ends the older
	// sessions at once, lengthening it lengthens theirs (it is not part of
	// the binding, so changing it alone keeps sessions).
	Lifetime time.Duration
	// TicketKeyRotation is, in TicketKeys mode, the longest a ticket key may
	// stay active. Each Policy has a key ring of its own, rotated at the
	// interval its hosts were last configured with; zero leaves the node's
	// interval (Config.TicketKeyRotation).
	TicketKeyRotation time.Duration

	// Leaf is the DER of the certificate the host serves; nil binds to no
	// certificate. It is only read during ConfigureTLS.
	Leaf []byte
	// Policy names the settings sessions are issued under (for meshgate,
	// the TLSPolicy's "namespace/name", "" for the default) and
	// PolicyDigest is a digest of their content (versions, suites, curves,
	// mode, 0-RTT): changing them ends their sessions. A digest of the
	// content, not a version number, because standalone manifests carry no
	// generation (every edit would keep generation 0).
	Policy       string
	PolicyDigest string
}

// hostBinding is what a host's sessions are bound to, minus the SNI name.
type hostBinding [32]byte

func newHostBinding(h Host) hostBinding {
	d := sha256.New()
	d.Write([]byte("meshgate session binding v2\x00"))
	if len(h.Leaf) > 0 {
		leaf := sha256.Sum256(h.Leaf)
		d.Write(leaf[:])
	}
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(h.Policy)))
	d.Write(l[:])
	d.Write([]byte(h.Policy))
	d.Write([]byte(h.PolicyDigest))
	var b hostBinding
	d.Sum(b[:0])
	return b
}

// ConfigureTLS installs session resumption for h on cfg, a configuration
// the data plane has just built and not yet used (a tls.Config must not be
// modified once in use). It is the one place that decides each mode:
//
//   - Stateful and TicketKeys set WrapSession and UnwrapSession;
//   - Off sets SessionTicketsDisabled;
//
// and, whatever the mode, chains cfg.VerifyConnection to count the
// handshake (full or resumed, by TLS version): the data plane's TCP
// listener and HTTP/3 (which clones these configs) count nowhere else.
//
// The data plane calls it once per host and table, when the table is
// published, never per handshake. It is safe for concurrent use and does
// not keep cfg.
func (n *Node) ConfigureTLS(cfg *tls.Config, h Host) {
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		n.m.handshake(cs.Version, cs.DidResume, kindOf(cs.Version))
		if prev != nil {
			return prev(cs)
		}
		return nil
	}
	lifetime := h.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	n.noteLifetime(lifetime)
	hb := newHostBinding(h)
	switch h.Mode {
	case Off:
		cfg.SessionTicketsDisabled = true
	case TicketKeys:
		th := &ticketHost{n: n, ring: n.hostRing(h.Policy, h.TicketKeyRotation), hb: hb, lifetime: lifetime}
		cfg.WrapSession, cfg.UnwrapSession = th.wrap, th.unwrap
	default:
		sh := &statefulHost{n: n, hb: hb, lifetime: lifetime}
		cfg.WrapSession, cfg.UnwrapSession = sh.wrap, sh.unwrap
	}
}

// ConfigureTLS12 installs session-ID resumption for h on cfg, the TLS 1.2
// session-ID path's configuration of a host (internal/tls12, for clients
// that resume by session ID only), and chains cfg.VerifyConnection to count
// its handshakes with the others. It returns false, and leaves cfg alone,
// when h's mode is Off: the data plane then does not route the host's
// clients to that path. The same rules as ConfigureTLS apply to cfg.
func (n *Node) ConfigureTLS12(cfg *tls12.Config, h Host) bool {
	c := n.SessionIDCache(h)
	if c == nil {
		return false
	}
	cfg.Sessions = c
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		n.m.handshake(cs.Version, cs.DidResume, kindSessionID)
		if prev != nil {
			return prev(cs)
		}
		return nil
	}
	return true
}
