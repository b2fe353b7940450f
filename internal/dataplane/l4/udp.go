package l4

import (
	"container/list"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/routing"
)

const (
	// maxDatagram is the listening socket's read buffer: any UDP payload.
	maxDatagram = 64 * 1024
	// flowBufSize bounds replies from backends. Flows each hold one such
	// buffer while they wait, so it is smaller than maxDatagram; larger
	// replies are dropped and counted as truncated.
	flowBufSize = 16 * 1024
)

// udpListener relays datagrams for one UDP L4Service. Each client address
// gets a flow: a connected upstream socket to one backend endpoint, whose
// replies are sent back to the client from the listening socket.
type udpListener struct {
	mgr *Manager
	pc  *net.UDPConn
	svc atomic.Pointer[routing.L4Service]
	m   *svcMetrics
	rr  roundRobin

	mu     sync.Mutex
	flows  map[netip.AddrPort]*flow
	order  *list.List // *flow in creation order, oldest first
	closed bool
	wg     sync.WaitGroup // flow reader goroutines
}

type flow struct {
	client netip.AddrPort
	up     *net.UDPConn
	last   atomic.Int64 // unix nanos of the last datagram either way
	elem   *list.Element
}

func newUDPListener(mgr *Manager, pc *net.UDPConn, s *routing.L4Service, k listenerKey) *udpListener {
	l := &udpListener{
		mgr: mgr, pc: pc, m: mgr.cfg.Metrics.forService(serviceName(k)),
		flows: make(map[netip.AddrPort]*flow), order: list.New(),
	}
	l.svc.Store(s)
	return l
}

func (l *udpListener) retarget(s *routing.L4Service) { l.svc.Store(s) }
func (l *udpListener) addr() net.Addr                { return l.pc.LocalAddr() }

// close closes the socket and every flow; serve then returns.
func (l *udpListener) close() {
	l.mu.Lock()
	l.closed = true
	for _, f := range l.flows {
		f.up.Close()
	}
	l.mu.Unlock()
	l.pc.Close()
}

func (l *udpListener) idle() time.Duration {
	if d := l.svc.Load().IdleTimeout; d > 0 {
		return d
	}
	return l.mgr.cfg.UDPIdleTimeout
}

// serve reads client datagrams until the socket is closed, then waits for
// the flow goroutines.
func (l *udpListener) serve() {
	defer l.wg.Wait()
	defer l.close()
	buf := make([]byte, maxDatagram)
	var backoff time.Duration
	for {
		n, _, flags, addr, err := l.pc.ReadMsgUDPAddrPort(buf, nil)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, time.Millisecond), 100*time.Millisecond)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if flags&syscall.MSG_TRUNC != 0 {
			l.m.drop(dropTruncated)
			continue
		}
		// Every datagram is checked, not only a flow's first: a source
		// denied after its flow was created is cut off at once, and its
		// flow then ends at its idle timeout.
		if l.mgr.cfg.Deny.Refuse(addr.Addr(), deny.StageL4UDP) {
			l.m.denied.Inc()
			continue
		}
		f := l.flowFor(addr)
		if f == nil {
			continue
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := f.up.Write(buf[:n]); err != nil {
			l.m.drop(dropWriteError)
			continue
		}
		l.m.bytesIn.Add(float64(n))
	}
}

// flowFor returns the client's flow, creating it (and evicting the oldest
// flow when the table is full) as needed; nil means the datagram is dropped.
func (l *udpListener) flowFor(client netip.AddrPort) *flow {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.flows[client]; f != nil {
		return f
	}
	if l.closed {
		return nil
	}
	if len(l.flows) >= l.mgr.cfg.MaxFlows {
		if l.mgr.cfg.RefuseWhenFull {
			l.m.drop(dropFlowsFull)
			return nil
		}
		oldest := l.order.Front().Value.(*flow)
		l.removeLocked(oldest)
		oldest.up.Close()
		l.m.drop(dropEvicted)
	}
	b := l.svc.Load().Backend
	if len(b.Endpoints) == 0 {
		l.m.drop(dropNoBackend)
		return nil
	}
	ep := b.Endpoints[l.rr.next(b.Name)%uint64(len(b.Endpoints))]
	ra, err := net.ResolveUDPAddr("udp", ep)
	if err != nil {
		l.m.drop(dropDial)
		return nil
	}
	up, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		l.m.drop(dropDial)
		return nil
	}
	f := &flow{client: client, up: up}
	f.last.Store(time.Now().UnixNano())
	f.elem = l.order.PushBack(f)
	l.flows[client] = f
	l.m.flows.Inc()
	l.m.activeFlows.Inc()
	l.wg.Add(1)
	go l.relay(f)
	return f
}

// removeLocked drops f from the table if it is still there; l.mu is held.
func (l *udpListener) removeLocked(f *flow) {
	if l.flows[f.client] != f {
		return
	}
	delete(l.flows, f.client)
	l.order.Remove(f.elem)
	l.m.activeFlows.Dec()
}

// relay copies backend replies to the client until the flow is idle for the
// idle timeout or its socket is closed (eviction, listener close).
func (l *udpListener) relay(f *flow) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		l.removeLocked(f)
		l.mu.Unlock()
		f.up.Close()
	}()
	buf := make([]byte, flowBufSize)
	// The read deadline is armed once per idle period rather than per
	// datagram: when it fires, it is re-armed from the last activity in
	// either direction, or the flow ends.
	_ = f.up.SetReadDeadline(time.Now().Add(l.idle()))
	for {
		n, _, flags, _, err := f.up.ReadMsgUDPAddrPort(buf, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				idle := l.idle()
				last := time.Unix(0, f.last.Load())
				if time.Since(last) >= idle {
					return
				}
				_ = f.up.SetReadDeadline(last.Add(idle))
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED from an ICMP port unreachable
		}
		if flags&syscall.MSG_TRUNC != 0 {
			l.m.drop(dropTruncated)
			continue
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := l.pc.WriteToUDPAddrPort(buf[:n], f.client); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.m.drop(dropWriteError)
			continue
		}
		l.m.bytesOut.Add(float64(n))
	}
}
