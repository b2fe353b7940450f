package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// Inbound connections: accept (bounded by MaxInbound, backing off on
// errors), authenticate, serve.

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

// acceptLoop accepts inbound connections until the listener closes or ctx
// ends.
func (m *Mesh) acceptLoop(ctx context.Context, wg *sync.WaitGroup) {
	sem := make(chan struct{}, m.cfg.MaxInbound)
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
		select {
		case sem <- struct{}{}:
		default:
			m.stats.reject(RejectTooMany)
			raw.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			m.serveInbound(ctx, raw)
		})
	}
}

// serveInbound authenticates an inbound connection and serves it.
func (m *Mesh) serveInbound(ctx context.Context, raw net.Conn) {
	raw.SetDeadline(time.Now().Add(m.cfg.DialTimeout))
	tc := tls.Server(countConn{Conn: raw, s: &m.stats}, m.serverTLS)
	hctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		raw.Close()
		if ctx.Err() == nil {
			m.stats.reject(classifyTLS(err))
		}
		return
	}
	c := newConn(m, tc, nil)
	if _, err := c.readHello(); err != nil {
		raw.Close()
		var re *rejectError
		if errors.As(err, &re) {
			m.stats.reject(re.reason)
		}
		m.cfg.Log.V(1).Info("mesh connection rejected", "remote", raw.RemoteAddr().String(), "err", err.Error())
		return
	}
	if err := c.writeMsg(m.hello()); err != nil {
		raw.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	m.peerBack(c.peerName)
	m.inboundUp(c.peerName)
	m.stats.inbound.Add(1)
	c.run(ctx)
	m.stats.inbound.Add(-1)
	m.inboundDown(c.peerName)
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
