package mesh

import (
	"sync"
)

// PeerVerifier verifies a peer's certificate chain (leaf first) against
// the CAs trusted now and returns its node name. *pki.CA and *pki.Identity
// implement it.
type PeerVerifier interface {
	VerifyPeer(rawCerts [][]byte) (string, error)
}

// connSet is the set of established connections, both directions.
type connSet struct {
	mu sync.Mutex
	m  map[*conn]struct{}
}

func (s *connSet) add(c *conn) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*conn]struct{})
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(c *conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) list() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.m))
	for c := range s.m {
		out = append(out, c)
	}
	return out
}

// Reverify checks the certificate chain every established connection was
// authenticated with against the CAs Config.CA trusts now, and closes the
// connections it no longer admits (counted as rejections with reason
// RejectUntrusted); it returns how many it closed. Call it after the
// trusted CAs changed (a CA rotation dropping the old CA): a connection
// made with a certificate of a CA that is no longer trusted does not
// outlive the trust. Outbound peers re-dial at once, with the node's
// current certificate.
func (m *Mesh) Reverify() int {
	closed := 0
	for _, c := range m.conns.list() {
		certs := c.tc.ConnectionState().PeerCertificates
		raw := make([][]byte, len(certs))
		for i, pc := range certs {
			raw[i] = pc.Raw
		}
		if _, err := m.cfg.CA.VerifyPeer(raw); err == nil {
			continue
		}
		m.cfg.Log.Info("mesh connection closed: its certificate is no longer trusted", "peer", c.peerName)
		m.stats.reject(RejectUntrusted)
		c.nc.Close()
		closed++
	}
	return closed
}
