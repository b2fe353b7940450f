package l4

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/routing"
)

// tcpListener accepts connections for one TCP L4Service.
type tcpListener struct {
	mgr    *Manager
	ln     net.Listener
	svc    atomic.Pointer[routing.L4Service]
	m      *svcMetrics
	rr     roundRobin
	active atomic.Int64
}

func newTCPListener(mgr *Manager, ln net.Listener, s *routing.L4Service, k listenerKey) *tcpListener {
	l := &tcpListener{mgr: mgr, ln: ln, m: mgr.cfg.Metrics.forService(serviceName(k))}
	l.svc.Store(s)
	return l
}

func (l *tcpListener) retarget(s *routing.L4Service) { l.svc.Store(s) }
func (l *tcpListener) close()                        { l.ln.Close() }
func (l *tcpListener) addr() net.Addr                { return l.ln.Addr() }

// serve is the accept loop; it returns when the listener is closed.
// Temporary accept errors (EMFILE…) back off up to one second.
func (l *tcpListener) serve() {
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.mgr.cfg.Log.Error(err, "l4: accept failed", "service", l.m.service)
			select {
			case <-time.After(backoff):
			case <-l.mgr.track.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		l.m.conns.Inc()
		if l.active.Add(1) > int64(l.mgr.cfg.MaxConns) {
			l.active.Add(-1)
			l.m.drop(dropLimit)
			c.Close()
			continue
		}
		if !l.mgr.track.add(c) {
			l.active.Add(-1)
			c.Close()
			return
		}
		go l.handle(c)
	}
}

// handle proxies one accepted connection; it owns c.
func (l *tcpListener) handle(c net.Conn) {
	defer l.mgr.track.remove(c)
	defer l.active.Add(-1)
	l.m.active.Inc()
	defer l.m.active.Dec()
	// With AcceptProxyProtocol, RemoteAddr reads the PROXY header (bounded
	// by ProxyHeaderTimeout) and is the client it announces.
	if l.mgr.cfg.Deny.Refuse(clientAddr(c.RemoteAddr()), deny.StageL4TCP) {
		l.m.denied.Inc()
		c.Close()
		return
	}
	s := l.svc.Load()
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = l.mgr.cfg.IdleTimeout
	}
	forward(l.mgr.track.ctx, c, s.Backend, &l.rr, l.mgr.cfg.ConnectTimeout, idle, l.m, l.mgr.cfg.Log)
}
