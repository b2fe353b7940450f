package l4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/meshgate/meshgate/internal/dataplane/sni"
	"github.com/meshgate/meshgate/internal/routing"
)

// Defaults for zero-valued timeouts and limits.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultIdleTimeout    = 10 * time.Minute // TCP, like nginx's proxy_timeout × 1 (10m)
	DefaultUDPIdleTimeout = 60 * time.Second
	DefaultPeekTimeout    = 10 * time.Second
	DefaultMaxConns       = 10000 // per TCP listener / for passthrough
	DefaultMaxFlows       = 4096  // per UDP listener

	copyBufSize     = 32 * 1024
	maxDialAttempts = 3    // endpoints tried per connection
	maxRRKeys       = 4096 // round-robin counters kept before the map is reset
)

var errNoEndpoints = errors.New("l4: backend has no ready endpoint")

// roundRobin hands out per-backend rotating start indexes. Counters are
// keyed by Backend.Name so they survive table swaps; the map is bounded.
type roundRobin struct {
	mu sync.Mutex
	m  map[string]*atomic.Uint64
}

func (r *roundRobin) next(name string) uint64 {
	r.mu.Lock()
	c := r.m[name]
	if c == nil {
		if r.m == nil || len(r.m) >= maxRRKeys {
			r.m = make(map[string]*atomic.Uint64)
		}
		c = new(atomic.Uint64)
		r.m[name] = c
	}
	r.mu.Unlock()
	return c.Add(1) - 1
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// dialBackend connects to one of b's endpoints, starting at the next
// round-robin position and trying up to maxDialAttempts endpoints, each
// with the connect timeout.
func dialBackend(ctx context.Context, rr *roundRobin, b *routing.Backend, timeout time.Duration) (net.Conn, error) {
	n := len(b.Endpoints)
	if n == 0 {
		return nil, fmt.Errorf("%w: %s", errNoEndpoints, b.Name)
	}
	if b.ConnectTimeout > 0 {
		timeout = b.ConnectTimeout
	}
	start := rr.next(b.Name)
	var errs []error
	for i := range min(n, maxDialAttempts) {
		addr := b.Endpoints[(start+uint64(i))%uint64(n)]
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("l4: dial %s: %w", b.Name, errors.Join(errs...))
}

// writeProxyHeader sends a PROXY protocol header of the given version (1 or
// 2) to backend, announcing client's remote address as the source and its
// local address as the destination. client's RemoteAddr may already be the
// address a PROXY header on the listener carried.
func writeProxyHeader(backend net.Conn, version int, client net.Conn, timeout time.Duration) error {
	src, dst := matchFamilies(client.RemoteAddr(), client.LocalAddr())
	hdr := proxyproto.HeaderProxyFromAddrs(byte(version), src, dst)
	if err := backend.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("l4: proxy header: %w", err)
	}
	if _, err := hdr.WriteTo(backend); err != nil {
		return fmt.Errorf("l4: write proxy header: %w", err)
	}
	return backend.SetWriteDeadline(time.Time{})
}

// matchFamilies makes source and destination TCP addresses the same IP
// family, as the PROXY protocol requires. A destination that cannot be
// expressed in the source's family becomes the unspecified address.
func matchFamilies(src, dst net.Addr) (net.Addr, net.Addr) {
	s, ok1 := src.(*net.TCPAddr)
	d, ok2 := dst.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return src, dst
	}
	s4, d4 := s.IP.To4() != nil, d.IP.To4() != nil
	switch {
	case s4 && d4:
		return &net.TCPAddr{IP: s.IP.To4(), Port: s.Port}, &net.TCPAddr{IP: d.IP.To4(), Port: d.Port}
	case s4:
		return &net.TCPAddr{IP: s.IP.To4(), Port: s.Port}, &net.TCPAddr{IP: net.IPv4zero.To4(), Port: d.Port}
	case d4:
		return s, &net.TCPAddr{IP: d.IP.To16(), Port: d.Port}
	}
	return s, d
}

// pipe copies client↔backend until both directions end, then closes both
// connections. A direction that reads EOF half-closes its destination
// (CloseWrite) so the other direction keeps flowing. idle > 0 ends the pair
// when neither direction moved a byte for that long. pipe blocks; it runs
// one extra goroutine that it waits for before returning.
func pipe(client, backend net.Conn, idle time.Duration, m *svcMetrics) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var abort sync.Once
	closeBoth := func() {
		abort.Do(func() {
			client.Close()
			backend.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(backend, client, idle, &last, m.bytesIn, closeBoth)
	}()
	copyHalf(client, backend, idle, &last, m.bytesOut, closeBoth)
	<-done
	closeBoth()
}

type adder interface{ Add(float64) }

// copyHalf copies src → dst. On EOF it half-closes dst; on any other error
// (or idle expiry) it calls abort, which closes both connections.
func copyHalf(dst, src net.Conn, idle time.Duration, last *atomic.Int64, bytes adder, abort func()) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			if idle > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				abort()
				return
			}
			bytes.Add(float64(n))
			last.Store(time.Now().UnixNano())
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			if sni.CloseWrite(dst) != nil {
				abort()
			}
			return
		}
		var ne net.Error
		if idle > 0 && errors.As(err, &ne) && ne.Timeout() &&
			time.Since(time.Unix(0, last.Load())) < idle {
			continue // the other direction is active
		}
		abort()
		return
	}
}
