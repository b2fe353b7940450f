package pki

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Identity is a replica's current mesh CA Bundle, replaced as the material
// changes (a rotation step) while the replica runs. Its methods are safe
// for concurrent use.
type Identity struct {
	cur atomic.Pointer[Bundle]

	mu   sync.Mutex // serializes Update and the callbacks
	subs []func(*Bundle)
}

// NewIdentity starts an Identity at b.
func NewIdentity(b *Bundle) *Identity {
	id := &Identity{}
	id.cur.Store(b)
	return id
}

// IdentityOf is the Identity of a lone CA that never changes.
func IdentityOf(ca *CA) (*Identity, error) {
	b, err := BundleOf(ca)
	if err != nil {
		return nil, err
	}
	return NewIdentity(b), nil
}

// ErrFixedAtStart is wrapped by Update's error when the new material
// changes what a running replica cannot change: the cluster id or the
// session-id MAC key.
var ErrFixedAtStart = errors.New("changes need a restart of every replica")

// Current returns the bundle in force.
func (id *Identity) Current() *Bundle { return id.cur.Load() }

// Update puts b in force and runs the OnUpdate callbacks, in order, before
// returning. It reports false (and runs nothing) when b has the current
// generation. A b whose cluster id or session-id MAC key differs from the
// current one is refused with an error wrapping ErrFixedAtStart, and the
// current bundle stays in force.
func (id *Identity) Update(b *Bundle) (bool, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	old := id.cur.Load()
	if b.clusterID != old.clusterID {
		return false, fmt.Errorf("pki: cluster id %q → %q: %w", old.clusterID, b.clusterID, ErrFixedAtStart)
	}
	if !bytes.Equal(b.sessionKey, old.sessionKey) {
		return false, fmt.Errorf("pki: session-id key changed: %w", ErrFixedAtStart)
	}
	if b.Generation() == old.Generation() {
		return false, nil
	}
	id.cur.Store(b)
	for _, fn := range id.subs {
		fn(b)
	}
	return true, nil
}

// OnUpdate registers fn to run after every Update that changed the bundle.
func (id *Identity) OnUpdate(fn func(*Bundle)) {
	id.mu.Lock()
	id.subs = append(id.subs, fn)
	id.mu.Unlock()
}

// VerifyPeer verifies a peer's chain against the CAs trusted now.
func (id *Identity) VerifyPeer(rawCerts [][]byte) (string, error) {
	return id.Current().VerifyPeer(rawCerts)
}

// NewNodeCert issues a first node certificate for name from the current
// signing CA; Get re-issues it from whichever CA signs then.
func (id *Identity) NewNodeCert(name string, ips []net.IP, validity time.Duration) (*NodeCert, error) {
	return newNodeCert(func() *CA { return id.Current().signing }, name, ips, validity)
}
