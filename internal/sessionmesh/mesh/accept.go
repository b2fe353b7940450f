package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Inbound connections: accept (admission below, backing off on errors),
// authenticate, serve.

// Accept-error backoff: resource exhaustion (EMFILE and friends) is retried
// after a wait that doubles from acceptBackoffMin up to acceptBackoffMax,
// and resets after the next successful accept, as the data plane's
// listeners do.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

func nextAcceptBackoff(d time.Duration) time.Duration {
	return min(max(2*d, acceptBackoffMin), acceptBackoffMax)
}

// Admission. An inbound connection is a stranger until its TLS handshake
// and Hello prove a cluster identity, and anyone who can reach the port can
// open one. Before issue 15 (finding 9) every accepted connection took one
// of the MaxInbound slots before TLS started and held it up to DialTimeout:
// a few hundred half-open connections, reopened as they were closed, kept a
// real peer out. Now:
//
//   - a handshake from a source address in the peer set (a replica's pod
//     IP) takes a peer handshake slot: at most MaxInbound of them, no
//     per-source bound (several replicas may share an address), and the
//     DialTimeout deadline;
//   - any other handshake takes a stranger slot: at most
//     MaxHandshakesPerSource per source address and MaxHandshakes in all,
//     for at most HandshakeTimeout;
//   - only an authenticated connection (TLS and Hello done) takes one of
//     the MaxInbound connection slots, for as long as it lives.
//
// A flood from strangers therefore uses up stranger slots only: replicas
// keep connecting, whoever the flood comes from.
type admission struct {
	mu        sync.Mutex
	perSource map[netip.Addr]int // stranger handshakes in progress, by source
	strangers int                // stranger handshakes in progress
	peers     int                // handshakes in progress from peer-set addresses
	conns     int                // authenticated inbound connections
}

// admit takes a handshake slot for a connection from src (known: src is in
// the peer set), or reports false with the rejection reason.
func (m *Mesh) admit(src netip.Addr, known bool) (bool, string) {
	a := &m.adm
	a.mu.Lock()
	defer a.mu.Unlock()
	if known {
		if a.peers >= m.cfg.MaxInbound {
			return false, RejectTooMany
		}
		a.peers++
		return true, ""
	}
	if a.strangers >= m.cfg.MaxHandshakes || a.perSource[src] >= m.cfg.MaxHandshakesPerSource {
		return false, RejectTooManyHandshakes
	}
	a.strangers++
	a.perSource[src]++
	return true, ""
}

// handshakeDone gives back the handshake slot admit took.
func (m *Mesh) handshakeDone(src netip.Addr, known bool) {
	a := &m.adm
	a.mu.Lock()
	defer a.mu.Unlock()
	if known {
		a.peers--
		return
	}
	a.strangers--
	if a.perSource[src]--; a.perSource[src] <= 0 {
		delete(a.perSource, src)
	}
}

// establish takes a connection slot for an authenticated connection.
func (m *Mesh) establish() bool {
	a := &m.adm
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conns >= m.cfg.MaxInbound {
		return false
	}
	a.conns++
	return true
}

func (m *Mesh) closeEstablished() {
	m.adm.mu.Lock()
	m.adm.conns--
	m.adm.mu.Unlock()
}

// knownSource reports whether src is the IP of an address in the peer set.
func (m *Mesh) knownSource(src netip.Addr) bool {
	if ips := m.peerIPs.Load(); ips != nil {
		return (*ips)[src]
	}
	return false
}

// sourceOf is the IP a connection comes from (the zero Addr if unknown).
func sourceOf(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// acceptLoop accepts inbound connections until the listener closes or ctx
// ends.
func (m *Mesh) acceptLoop(ctx context.Context, wg *sync.WaitGroup) {
	var backoff time.Duration
	for {
		raw, err := m.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = nextAcceptBackoff(backoff)
			m.cfg.Log.Error(err, "mesh accept failed", "retryIn", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		src := sourceOf(raw)
		known := m.knownSource(src)
		if ok, reason := m.admit(src, known); !ok {
			m.stats.reject(reason)
			raw.Close()
			continue
		}
		wg.Go(func() { m.serveInbound(ctx, raw, src, known) })
	}
}

// serveInbound authenticates an inbound connection and serves it.
func (m *Mesh) serveInbound(ctx context.Context, raw net.Conn, src netip.Addr, known bool) {
	timeout := m.cfg.HandshakeTimeout
	if known {
		timeout = m.cfg.DialTimeout
	}
	c, ok := m.handshakeInbound(ctx, raw, timeout)
	m.handshakeDone(src, known)
	if !ok {
		return
	}
	if !m.establish() {
		m.stats.reject(RejectTooMany)
		raw.Close()
		return
	}
	defer m.closeEstablished()
	m.peerBack(c.peerName)
	m.inboundUp(c.peerName)
	m.stats.inbound.Add(1)
	c.run(ctx)
	m.stats.inbound.Add(-1)
	m.inboundDown(c.peerName)
}

// handshakeInbound runs TLS and the Hello exchange within timeout. On
// failure it closes raw, counts the reason and reports false.
func (m *Mesh) handshakeInbound(ctx context.Context, raw net.Conn, timeout time.Duration) (*conn, bool) {
	raw.SetDeadline(time.Now().Add(timeout))
	tc := tls.Server(countConn{Conn: raw, s: &m.stats}, m.serverTLS)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		raw.Close()
		if ctx.Err() == nil {
			m.stats.reject(classifyTLS(err))
		}
		return nil, false
	}
	c := newConn(m, tc, nil)
	if _, err := c.readHello(); err != nil {
		raw.Close()
		var re *rejectError
		if errors.As(err, &re) {
			m.stats.reject(re.reason)
		}
		m.cfg.Log.V(1).Info("mesh connection rejected", "remote", raw.RemoteAddr().String(), "err", err.Error())
		return nil, false
	}
	if err := c.writeMsg(m.hello()); err != nil {
		raw.Close()
		return nil, false
	}
	raw.SetDeadline(time.Time{})
	return c, true
}

// peerLeft marks the outbound peer with that name as left, so it is
// re-dialed slowly until it returns.
func (m *Mesh) peerLeft(name string) {
	m.eachPeer(func(p *peer) {
		if p.nameLoad() == name {
			p.left.Store(true)
		}
	})
}

// peerBack wakes the outbound side towards a peer that just dialed us, so
// a restarted peer is reconnected at once instead of after the backoff.
func (m *Mesh) peerBack(name string) {
	m.eachPeer(func(p *peer) {
		if !p.online.Load() && p.nameLoad() == name {
			p.left.Store(false)
			signal(p.redial)
		}
	})
}
