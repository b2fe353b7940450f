package http3

import (
	"crypto/tls"

	qhttp3 "github.com/quic-go/quic-go/http3"

	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
	"github.com/meshgate/meshgate/internal/routing"
)

// tlsState is what the QUIC listener serves for one table: the data plane's
// per-host configurations derived for QUIC, and whether any host allows
// 0-RTT. Built by Apply, immutable, read through one atomic pointer.
type tlsState struct {
	set     *tlsconfig.Set
	any0RTT bool
}

// newTLSState derives the QUIC variant of every configuration of set: ALPN
// h3 only, TLS 1.3 only, and, for a host whose policy forbids 0-RTT, an
// UnwrapSession that clears SessionState.EarlyData (crypto/tls then rejects
// the early data and the client resends it in 1-RTT). refused counts those
// refusals.
func newTLSState(set *tlsconfig.Set, refused func()) *tlsState {
	st := &tlsState{}
	st.set = set.Derive(func(h *routing.TLSHost, c *tls.Config) {
		c.NextProtos = []string{qhttp3.NextProtoH3}
		c.MinVersion = tls.VersionTLS13
		if c.MaxVersion != 0 && c.MaxVersion < tls.VersionTLS13 {
			c.MaxVersion = tls.VersionTLS13
		}
		if allows0RTT(h) {
			st.any0RTT = true
			return
		}
		unwrap := c.UnwrapSession
		if unwrap == nil {
			unwrap = c.DecryptTicket
		}
		c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := unwrap(identity, cs)
			if ss != nil && ss.EarlyData {
				ss.EarlyData = false
				refused()
			}
			return ss, err
		}
	})
	return st
}

func allows0RTT(h *routing.TLSHost) bool { return h.Policy != nil && h.Policy.Allow0RTT }

// getConfigForClient is the listener's GetConfigForClient.
func (s *Server) getConfigForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	st := s.tls.Load()
	if st == nil {
		return nil, tlsconfig.ErrNoCertificate
	}
	return st.set.ConfigFor(hello)
}
