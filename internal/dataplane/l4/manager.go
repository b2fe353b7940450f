package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/pires/go-proxyproto"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/routing"
)

// ManagerConfig configures a Manager. The zero value is usable and binds
// all interfaces.
type ManagerConfig struct {
	// BindIP is the address listeners bind to: "" for all interfaces,
	// "127.0.0.1" in standalone mode.
	BindIP string
	// ConnectTimeout bounds each backend dial unless the Backend sets its
	// own; zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout closes TCP connections without traffic in either
	// direction for this long, unless the L4Service sets its own; zero
	// means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// UDPIdleTimeout removes UDP flows without traffic for this long,
	// unless the L4Service sets its own; zero means DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration
	// MaxConns bounds concurrent connections per TCP listener; zero means
	// DefaultMaxConns.
	MaxConns int
	// MaxFlows bounds the flow table of each UDP listener; zero means
	// DefaultMaxFlows. When it is full a new client evicts the oldest flow,
	// or is refused if RefuseWhenFull is set; both are counted as drops.
	MaxFlows       int
	RefuseWhenFull bool
	// AcceptProxyProtocol requires a PROXY v1/v2 header (as sent by a load
	// balancer such as an NLB or HAProxy) on every TCP listener; the client
	// address it carries is what backends see in their own PROXY header.
	// Connections from sources outside TrustedProxies are closed at accept.
	// UDP listeners are unaffected.
	AcceptProxyProtocol bool
	// TrustedProxies lists the sources allowed to send PROXY headers (the
	// load balancer's addresses). There is no default: with
	// AcceptProxyProtocol and no TrustedProxies every TCP connection is
	// refused, and NewManager's caller (cmd/meshgate) refuses that
	// configuration up front.
	TrustedProxies []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for the PROXY header; zero means
	// DefaultConnectTimeout.
	ProxyHeaderTimeout time.Duration
	// Deny is the cluster-wide deny list (nil denies nothing): a TCP
	// connection from a denied client — the PROXY header's source when
	// AcceptProxyProtocol is set — is closed before the backend is dialled,
	// and a UDP datagram from a denied source is dropped before it reaches
	// a flow. Both are counted in the list's refusals (stages l4_tcp,
	// l4_udp) and in meshgate_l4_drops_total{reason="deny_list"}. The check
	// is one atomic load and neither locks nor allocates, so a change of the
	// list applies to the next connection or datagram.
	Deny *deny.List
	// Metrics receives per-service metrics; nil means unregistered
	// collectors.
	Metrics *Metrics
	// Log receives listener errors; the zero Logger discards.
	Log logr.Logger
}

// listenerKey names a listener: the zero addr is ManagerConfig.BindIP's,
// a valid one a Gateway frontend's (routing.L4Service.Addr).
type listenerKey struct {
	addr  netip.Addr
	proto routing.L4Protocol
	port  int
}

// Manager runs one listener per (address, protocol, port) of
// routing.Table.L4 and
// forwards to the services' backends. Update it with every new table; its
// methods are safe for concurrent use.
type Manager struct {
	cfg   ManagerConfig
	track *tracker

	mu        sync.Mutex // serializes Update and Shutdown
	listeners map[listenerKey]l4Listener
	closed    bool
}

// l4Listener is a running TCP or UDP listener.
type l4Listener interface {
	// retarget atomically switches new connections/flows to svc.
	retarget(svc *routing.L4Service)
	// close stops the listener; it does not wait for connections.
	close()
	addr() net.Addr
}

// NewManager returns a Manager with no listeners; call Update to open them.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.UDPIdleTimeout <= 0 {
		cfg.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.Metrics == nil {
		cfg.Metrics, _ = NewMetrics(nil)
	}
	if cfg.ProxyHeaderTimeout <= 0 {
		cfg.ProxyHeaderTimeout = DefaultConnectTimeout
	}
	return &Manager{cfg: cfg, track: newTracker(), listeners: make(map[listenerKey]l4Listener)}
}

// Update makes the running listeners match t.L4 (nil t means none): it
// closes listeners whose (address, protocol, port) is gone, re-targets existing ones
// to the new backend (existing TCP connections and UDP flows keep their
// backend; new ones use the new backend), and opens new ones. A port that
// cannot be bound is reported in the returned error while the rest of the
// update still applies; the next Update retries it. Connections of a closed
// listener run on until they end or Shutdown.
func (m *Manager) Update(t *routing.Table) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("l4: manager is shut down")
	}
	want := make(map[listenerKey]*routing.L4Service)
	if t != nil {
		for i := range t.L4 {
			s := &t.L4[i]
			if s.Backend == nil || s.Port <= 0 || s.Port > 65535 || (s.Protocol != routing.L4TCP && s.Protocol != routing.L4UDP) {
				continue
			}
			want[listenerKey{s.Addr, s.Protocol, s.Port}] = s
		}
	}
	for k, l := range m.listeners {
		if want[k] == nil {
			l.close()
			delete(m.listeners, k)
		}
	}
	var errs []error
	for k, s := range want {
		if l := m.listeners[k]; l != nil {
			l.retarget(s)
			continue
		}
		l, err := m.listen(k, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.listeners[k] = l
	}
	return errors.Join(errs...)
}

func (m *Manager) listen(k listenerKey, s *routing.L4Service) (l4Listener, error) {
	host := m.cfg.BindIP
	if k.addr.IsValid() {
		host = k.addr.String()
	}
	addr := net.JoinHostPort(host, strconv.Itoa(k.port))
	switch k.proto {
	case routing.L4TCP:
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("l4: listen tcp %s: %w", addr, err)
		}
		if m.cfg.AcceptProxyProtocol {
			ln = &proxyproto.Listener{
				Listener:          ln,
				ConnPolicy:        trustPolicy(m.cfg.TrustedProxies),
				ReadHeaderTimeout: m.cfg.ProxyHeaderTimeout,
			}
		}
		l := newTCPListener(m, ln, s, k)
		if !m.track.goFunc(l.serve) {
			ln.Close()
			return nil, errors.New("l4: manager is shut down")
		}
		return l, nil
	default:
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("l4: resolve %s: %w", addr, err)
		}
		pc, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, fmt.Errorf("l4: listen udp %s: %w", addr, err)
		}
		l := newUDPListener(m, pc, s, k)
		if !m.track.goFunc(l.serve) {
			pc.Close()
			return nil, errors.New("l4: manager is shut down")
		}
		return l, nil
	}
}

// Addr returns the bound address of the listener for (proto, port) on
// BindIP, or nil when none is running.
func (m *Manager) Addr(proto routing.L4Protocol, port int) net.Addr {
	return m.AddrOn(netip.Addr{}, proto, port)
}

// AddrOn returns the bound address of the listener for (proto, port) on
// frontend address a (the zero Addr: BindIP), or nil when none is running.
func (m *Manager) AddrOn(a netip.Addr, proto routing.L4Protocol, port int) net.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.listeners[listenerKey{a, proto, port}]; l != nil {
		return l.addr()
	}
	return nil
}

// Shutdown closes every listener (TCP stops accepting; UDP sockets and
// their flows close at once), waits for TCP connections to finish until ctx
// is done, then closes them. It returns ctx.Err() if connections had to be
// force-closed. Update fails after Shutdown.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	for k, l := range m.listeners {
		l.close()
		delete(m.listeners, k)
	}
	m.mu.Unlock()
	return m.track.shutdown(ctx)
}

// trustPolicy requires a PROXY header from trusted sources and refuses
// every other source (go-proxyproto closes such connections and keeps
// accepting).
func trustPolicy(trusted []netip.Prefix) proxyproto.ConnPolicyFunc {
	return func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		if ta, ok := o.Upstream.(*net.TCPAddr); ok {
			if ip, ok := netip.AddrFromSlice(ta.IP); ok {
				ip = ip.Unmap()
				for _, p := range trusted {
					if p.Contains(ip) {
						return proxyproto.REQUIRE, nil
					}
				}
			}
		}
		return proxyproto.REJECT, proxyproto.ErrInvalidUpstream
	}
}

// clientAddr is the IP address of a TCP or UDP net.Addr (IPv4-mapped
// addresses unmapped), or the zero Addr for any other kind. It does not
// allocate.
func clientAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// serviceName is a listener's service label: "tcp:<port>" on BindIP,
// "tcp:<addr>:<port>" on a frontend address.
func serviceName(k listenerKey) string {
	name := "tcp:"
	if k.proto == routing.L4UDP {
		name = "udp:"
	}
	if k.addr.IsValid() {
		return name + netip.AddrPortFrom(k.addr, uint16(k.port)).String()
	}
	return name + strconv.Itoa(k.port)
}
