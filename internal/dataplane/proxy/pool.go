package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/http1"
)

// DefaultIdleConnTimeout closes upstream connections idle this long.
const DefaultIdleConnTimeout = 90 * time.Second

// upConn is one HTTP/1.1 connection to an endpoint. It is used by one
// request at a time, on that request's goroutine; in between it waits in
// its endpoint's pool holding no buffer.
type upConn struct {
	nc      net.Conn
	raw     syscall.RawConn // nil when nc is not a *net.TCPConn
	peek    func(fd uintptr) bool
	alive   bool // result of the last peek
	peekBuf [1]byte
	pool    *endpointPool

	br    http1.Reader
	resp  http1.ResponseHead
	chunk http1.ChunkedReader

	// cancelIO interrupts the connection's I/O (a method value made once,
	// so that registering it per request allocates no closure).
	cancelIO func()

	idleSince time.Time
	reused    bool // served a request before the current one
	// readDeadline reports a read deadline set on nc (for a response
	// head); clearOnRead has the next network read clear it first, so
	// that a body streaming longer than the response timeout is not cut
	// while a response that arrived whole costs no extra call.
	readDeadline, clearOnRead bool
}

func newUpConn(nc net.Conn, p *endpointPool) *upConn {
	uc := &upConn{nc: nc, pool: p}
	uc.cancelIO = uc.interrupt
	uc.br.Reset(uc)
	if tc, ok := nc.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			uc.raw = raw
			uc.peek = uc.peekFD // one method value per connection, not per check
		}
	}
	return uc
}

// interrupt makes blocked and later I/O on the connection fail at once.
func (uc *upConn) interrupt() { _ = uc.nc.SetDeadline(time.Unix(1, 0)) }

// Read reads from the connection for uc.br (see clearOnRead).
func (uc *upConn) Read(p []byte) (int, error) {
	if uc.clearOnRead && uc.readDeadline {
		_ = uc.nc.SetReadDeadline(time.Time{})
		uc.readDeadline = false
	}
	return uc.nc.Read(p)
}

// stillOpen reports whether the idle connection still looks usable: the
// server neither closed it nor sent anything unasked (a non-blocking
// MSG_PEEK, one syscall). Requests that cannot be retried check before
// they write; the others find out by failing and are retried.
func (uc *upConn) stillOpen() bool {
	if uc.raw == nil {
		return true
	}
	uc.alive = false
	if err := uc.raw.Read(uc.peek); err != nil {
		return false
	}
	return uc.alive
}

// close closes the connection for good.
func (uc *upConn) close() {
	_ = uc.nc.Close()
	uc.br.Release()
}

// endpointPool holds the idle keep-alive connections to one endpoint
// address, most recently used last. Its methods are safe for concurrent
// use.
type endpointPool struct {
	addr string
	set  *poolSet

	mu    sync.Mutex
	idle  []*upConn
	sweep *time.Timer // armed while idle is not empty
}

// poolSet is every endpoint pool of a Handler, with the shared limits.
type poolSet struct {
	maxPerHost  int
	maxTotal    int64
	idleTimeout time.Duration
	dialer      func(network, addr string, timeout time.Duration) (net.Conn, error)

	idleTotal atomic.Int64

	mu     sync.Mutex
	byAddr map[string]*endpointPool
	closed bool
}

func newPoolSet(maxPerHost, maxTotal int, idleTimeout time.Duration) *poolSet {
	return &poolSet{
		maxPerHost:  maxPerHost,
		maxTotal:    int64(maxTotal),
		idleTimeout: idleTimeout,
		byAddr:      make(map[string]*endpointPool),
	}
}

// endpoint returns the pool of addr, creating it. Called when a table's
// backend state is built, not per request.
func (s *poolSet) endpoint(addr string) *endpointPool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byAddr[addr]
	if p == nil {
		p = &endpointPool{addr: addr, set: s}
		s.byAddr[addr] = p
	}
	return p
}

// forget drops the pools of addresses not in live, closing their idle
// connections (the endpoint left every backend).
func (s *poolSet) forget(live map[string]bool) {
	s.mu.Lock()
	var gone []*endpointPool
	for addr, p := range s.byAddr {
		if !live[addr] {
			gone = append(gone, p)
			delete(s.byAddr, addr)
		}
	}
	s.mu.Unlock()
	for _, p := range gone {
		p.closeIdle()
	}
}

// closeAll closes every idle connection (shutdown). Connections in use
// are closed when their request ends.
func (s *poolSet) closeAll() {
	s.mu.Lock()
	ps := make([]*endpointPool, 0, len(s.byAddr))
	for _, p := range s.byAddr {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	for _, p := range ps {
		p.closeIdle()
	}
}

// get returns the most recently used idle connection, or nil. Connections
// idle longer than the idle timeout are closed instead of returned.
func (p *endpointPool) get(now time.Time) *upConn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		p.set.idleTotal.Add(-1)
		if now.Sub(uc.idleSince) < p.set.idleTimeout {
			uc.reused = true
			return uc
		}
		uc.close()
	}
}

// put returns uc to the pool, or closes it when the pool is full.
func (p *endpointPool) put(uc *upConn, now time.Time) {
	uc.br.Release()
	uc.idleSince = now
	p.mu.Lock()
	if len(p.idle) >= p.set.maxPerHost || p.set.idleTotal.Load() >= p.set.maxTotal {
		p.mu.Unlock()
		uc.close()
		return
	}
	p.idle = append(p.idle, uc)
	p.set.idleTotal.Add(1)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.set.idleTimeout, p.sweepIdle)
	}
	p.mu.Unlock()
}

// sweepIdle closes connections idle longer than the idle timeout (the
// least recently used are first in the slice) and re-arms itself while
// connections remain.
func (p *endpointPool) sweepIdle() {
	now := time.Now()
	p.mu.Lock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleSince) >= p.set.idleTimeout {
		n++
	}
	expired := make([]*upConn, n)
	copy(expired, p.idle[:n])
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	p.set.idleTotal.Add(int64(-n))
	if len(p.idle) > 0 {
		p.sweep.Reset(p.idle[0].idleSince.Add(p.set.idleTimeout).Sub(now))
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, uc := range expired {
		uc.close()
	}
}

// closeIdle closes every idle connection of the pool.
func (p *endpointPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.set.idleTotal.Add(int64(-len(idle)))
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, uc := range idle {
		uc.close()
	}
}

// idleCount returns the number of idle connections (tests).
func (p *endpointPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// dial connects to the pool's endpoint. A failure is a *dialError: nothing
// was sent, so the request may go elsewhere and the endpoint is ejected.
func (p *endpointPool) dial(timeout time.Duration) (*upConn, error) {
	d := p.set.dialer
	if d == nil {
		d = dialTCP
	}
	nc, err := d("tcp", p.addr, timeout)
	if err != nil {
		return nil, &dialError{err: err}
	}
	return newUpConn(nc, p), nil
}

// dialTCP dials with TCP keep-alive probes after 30s idle, as
// http.Transport's dialer does.
func dialTCP(network, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return d.Dial(network, addr)
}

// dialError marks a failure to connect to an endpoint.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Timeout reports whether the connect timed out (keeps net.Error semantics).
func (e *dialError) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}
