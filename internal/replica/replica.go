// Package replica assembles one meshgate replica's data plane: the session
// mesh node, the TLS and plain HTTP listeners, the reverse proxy, HTTP/3,
// TCP/UDP services and SNI passthrough, and the admin server. cmd/meshgate
// and the tests both build replicas with it, so the wiring exists once.
//
// A replica follows a routing.Holder that a source (Kubernetes or manifests)
// publishes into. One subscriber goroutine, woken by the holder's sequence,
// builds every state derived from a new table before any listener sees it
// (Contour's observers): the per-SNI tls.Configs with their session hooks,
// the HTTP/3 variants and 0-RTT policy, the proxy's upstream state and the
// L4 listeners. Handshakes and requests then read one atomic pointer each.
package replica

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/dataplane/admin"
	"github.com/meshgate/meshgate/internal/dataplane/http3"
	"github.com/meshgate/meshgate/internal/dataplane/l4"
	"github.com/meshgate/meshgate/internal/dataplane/proxy"
	"github.com/meshgate/meshgate/internal/dataplane/server"
	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
)

// DefaultShutdownGrace bounds the drain when Config.ShutdownGrace is zero.
const DefaultShutdownGrace = 10 * time.Second

// Config configures a Replica. Tables is required; every other zero field
// means the default of the component it configures.
type Config struct {
	// Tables is where the source publishes tables; required. The replica
	// only reads it.
	Tables *routing.Holder

	// NodeName is this replica's name, unique in the cluster; required.
	NodeName string
	// ClusterID is the mesh cluster id ("": the CA's fingerprint).
	ClusterID string
	// MeshAddr is the session mesh listen address. It is ignored without
	// CA: sessions then resume on this replica only.
	MeshAddr string
	// Peers yields the mesh peers; nil means none.
	Peers sessionmesh.PeerSource
	// CA is the mesh cluster CA, for a replica whose CA never changes;
	// Identity, if set, takes precedence. Neither runs a local-only
	// session store.
	CA *pki.CA
	// Identity is the mesh CA material in force, updated by the source
	// (Secret or --mesh-dir) during a CA rotation; see sessionmesh.Config.
	Identity *pki.Identity
	// SessionStoreBytes bounds the session store (0: its default).
	SessionStoreBytes int64
	// MeshTuning adjusts the mesh configuration (tests: short timers).
	MeshTuning func(*mesh.Config)

	// HTTPSAddr and HTTPAddr are the client listeners ("" disables one).
	// With HTTP3, HTTP/3 listens on the UDP twin of HTTPSAddr.
	HTTPSAddr, HTTPAddr string
	// ProxyProtocol and TrustedProxies: see server.Config; the L4 services
	// follow the same setting.
	ProxyProtocol  bool
	TrustedProxies []netip.Prefix
	// TrustedForwarders are the proxies in front of meshgate whose
	// X-Forwarded-For is kept (see proxy.Config).
	TrustedForwarders []netip.Prefix
	// UnderscoresInHeaders forwards request fields whose names contain
	// "_" (see proxy.Config); false drops them.
	UnderscoresInHeaders bool
	// RedirectPort is the port put into HTTP→HTTPS redirects; 0 means the
	// port of HTTPSAddr.
	RedirectPort int
	// ReadHeaderTimeout, IdleTimeout, MaxConns: see server.Config.
	ReadHeaderTimeout, IdleTimeout time.Duration
	MaxConns                       int
	// HTTP3 serves HTTP/3 and advertises it with Alt-Svc.
	HTTP3 bool
	// L4BindIP is the IP TCP/UDP service ports bind to; "" means the IP of
	// HTTPSAddr.
	L4BindIP string

	// MetricsAddr serves /metrics, /healthz, /readyz and
	// /status/sessionmesh ("" disables the admin server).
	MetricsAddr string
	// AdminTokenFile holds the bearer token of the admin listener's write
	// endpoints (POST /sessionmesh/revoke); "" leaves them unmounted. It is
	// read on every request (see admin.RequireBearer).
	AdminTokenFile string
	// ShutdownGrace bounds the drain (default DefaultShutdownGrace).
	ShutdownGrace time.Duration

	// KVZones are the key-value zones the replica holds, replicates over
	// the mesh and serves on the admin listener's /api/kv (with
	// AdminTokenFile). Every replica of a cluster should list the same
	// zones: entries of a zone a replica lacks are dropped there. The deny
	// list's zone (deny.Zone) always exists; a KVZone of that name sets
	// its TTL and budget (defaults DefaultDenyTTL and clusterstate's).
	// So does sticky learn's table (StickyZone; default budget
	// DefaultStickyBytes, its entries' lifetimes come from the backends).
	KVZones []KVZone

	// Registry receives every component's metrics; nil means a new one
	// with the Go and process collectors (see NewRegistry).
	Registry *prometheus.Registry
	// Log receives every component's logs; the zero value discards.
	Log logr.Logger
}

// DefaultDenyTTL is the lifetime of a deny-list entry written without a
// ttl, and the longest one, unless a KVZone named deny.Zone sets another.
const DefaultDenyTTL = 30 * 24 * time.Hour

// StickyZone is the zone sticky learn (meshgate.io/affinity: learn)
// records its sessions in: HMACs of the backends' session cookies →
// endpoint, replicated like any zone and served on /api/kv with the rest.
const StickyZone = "sticky"

// DefaultStickyBytes bounds the sticky zone's memory unless a KVZone
// named StickyZone sets another: about 300,000 sessions (an entry is
// charged some 210 bytes: a 22-byte key, an endpoint address and the
// zone's per-entry overhead). Over it the soonest-expiring sessions are
// evicted (counted), and their clients are balanced on their next request.
const DefaultStickyBytes = 64 << 20

// KVZone configures one key-value zone (--kv-zone).
type KVZone struct {
	// Name is the zone's name; required.
	Name string
	// TTL is the default and longest lifetime of an entry written through
	// the API (0: admin.DefaultKVTTL).
	TTL time.Duration
	// MaxBytes bounds the zone's memory (0: clusterstate's default).
	MaxBytes int64
}

// NewRegistry returns a metrics registry with the Go and process
// collectors. There is no global registry: each process and each test owns
// its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Replica is one replica's data plane. Build it with New, run it once with
// Run. Its accessors are safe for concurrent use.
type Replica struct {
	cfg Config
	log logr.Logger
	reg *prometheus.Registry

	node  *sessionmesh.Node
	proxy *proxy.Handler
	srv   *server.Server
	h3    *http3.Server // nil without HTTP3
	l4    *l4.Manager
	pass  *l4.Passthrough
	adm   *admin.Server // nil without MetricsAddr
	deny  *deny.List    // compiled from the deny zone by Run's follower
	// denyCaughtUp is set by the readiness check once the deny list has
	// been current with the mesh ready (the joiner's snapshot compiled).
	denyCaughtUp atomic.Bool

	applied    routing.Holder // tables every part serves
	generation prometheus.Gauge
	started    chan struct{} // closed once Run bound everything (or failed to)

	mu       sync.Mutex // serialises apply against the end of Run
	stopping bool
}

// New builds every part and binds the mesh listener (so MeshAddr is known
// before Run); nothing else is bound until Run.
func New(cfg Config) (*Replica, error) {
	if cfg.Tables == nil {
		return nil, errors.New("replica: Config.Tables is required")
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.Registry == nil {
		cfg.Registry = NewRegistry()
	}
	cfg.KVZones = withBuiltinZones(cfg.KVZones)
	r := &Replica{cfg: cfg, log: cfg.Log, reg: cfg.Registry, started: make(chan struct{}), deny: &deny.List{}}
	r.generation = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meshgate_dataplane_table_generation",
		Help: "Generation of the routing table the data plane serves (0: none yet).",
	})
	if err := r.reg.Register(r.generation); err != nil {
		return nil, fmt.Errorf("replica: register metrics: %w", err)
	}
	if err := r.reg.Register(r.deny); err != nil {
		return nil, fmt.Errorf("replica: register metrics: %w", err)
	}
	if err := r.newSessions(); err != nil {
		return nil, err
	}
	if err := r.newListeners(); err != nil {
		return nil, err
	}
	if err := r.newAdmin(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Replica) newSessions() error {
	meshAddr := r.cfg.MeshAddr
	if r.cfg.CA == nil && r.cfg.Identity == nil {
		meshAddr = "" // no PKI, no mesh: sessions resume on this replica only
	}
	var err error
	r.node, err = sessionmesh.New(sessionmesh.Config{
		NodeName:         r.cfg.NodeName,
		ClusterID:        r.cfg.ClusterID,
		ListenAddr:       meshAddr,
		Peers:            r.cfg.Peers,
		CA:               r.cfg.CA,
		Identity:         r.cfg.Identity,
		StoreBudgetBytes: r.cfg.SessionStoreBytes,
		Zones:            r.zoneConfigs(),
		MeshTuning:       r.cfg.MeshTuning,
		Registerer:       r.reg,
		Log:              r.log.WithName("sessionmesh"),
	})
	return err
}

// withBuiltinZones adds the deny list's and sticky learn's zones to
// zones unless listed.
func withBuiltinZones(zones []KVZone) []KVZone {
	out := slices.Clone(zones)
	for _, b := range []KVZone{{Name: deny.Zone, TTL: DefaultDenyTTL}, {Name: StickyZone, MaxBytes: DefaultStickyBytes}} {
		if !slices.ContainsFunc(zones, func(z KVZone) bool { return z.Name == b.Name }) {
			out = append(out, b)
		}
	}
	return out
}

// zoneConfigs are the store's zones of cfg.KVZones.
func (r *Replica) zoneConfigs() []clusterstate.ZoneConfig {
	var out []clusterstate.ZoneConfig
	for _, z := range r.cfg.KVZones {
		out = append(out, clusterstate.ZoneConfig{Name: z.Name, MaxBytes: z.MaxBytes})
	}
	return out
}

func (r *Replica) newListeners() error {
	cfg, log, reg := &r.cfg, r.log, r.reg
	httpsPort := portOf(cfg.HTTPSAddr)
	redirectPort := cfg.RedirectPort
	if redirectPort == 0 {
		redirectPort = httpsPort
	}
	altSvc := "" // advertise HTTP/3 on TLS responses when it is served
	if cfg.HTTP3 {
		altSvc = http3.AltSvcValue(httpsPort)
	}
	sticky, err := r.node.State().View(StickyZone)
	if err != nil {
		return fmt.Errorf("replica: sticky zone: %w", err)
	}
	r.proxy, err = proxy.New(proxy.Config{HTTPSPort: redirectPort, TrustedForwarders: cfg.TrustedForwarders,
		UnderscoresInHeaders: cfg.UnderscoresInHeaders, AltSvc: altSvc, Deny: r.deny,
		AffinityKey: r.node.AffinityKey(), Limiter: r.node.Limiter(), Sticky: sticky, Registerer: reg, Log: log.WithName("proxy")})
	if err != nil {
		return err
	}

	l4m, err := l4.NewMetrics(reg)
	if err != nil {
		return err
	}
	r.pass = l4.NewPassthrough(l4.PassthroughConfig{PeekTimeout: -1, Metrics: l4m, Log: log.WithName("passthrough")})
	bind := cfg.L4BindIP
	if bind == "" {
		bind = hostOf(cfg.HTTPSAddr)
	}
	r.l4 = l4.NewManager(l4.ManagerConfig{
		BindIP: bind, AcceptProxyProtocol: cfg.ProxyProtocol, TrustedProxies: cfg.TrustedProxies,
		Deny: r.deny, Metrics: l4m, Log: log.WithName("l4"),
	})

	r.srv, err = server.New(server.Config{
		HTTPSAddr:         cfg.HTTPSAddr,
		HTTPAddr:          cfg.HTTPAddr,
		ProxyProtocol:     cfg.ProxyProtocol,
		TrustedProxies:    cfg.TrustedProxies,
		PreTLS:            r.pass.Route,
		PostTLS:           r.pass.Terminated,
		Deny:              r.deny,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxConns:          cfg.MaxConns,
		Handler:           r.proxy,
		Registerer:        reg,
		Log:               log.WithName("server"),
	})
	if err != nil {
		return err
	}
	if cfg.HTTP3 {
		r.h3, err = http3.New(http3.Config{Addr: cfg.HTTPSAddr, Handler: r.proxy, Registerer: reg, Log: log.WithName("http3")})
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *Replica) newAdmin() error {
	if r.cfg.MetricsAddr == "" {
		return nil
	}
	r.adm = admin.New(admin.Config{Addr: r.cfg.MetricsAddr, Gatherer: r.reg})
	r.adm.Handle("/status/sessionmesh", r.node.StatusHandler())
	if tok := r.cfg.AdminTokenFile; tok != "" {
		r.adm.Handle("POST /sessionmesh/revoke", admin.RequireBearer(tok, r.node.RevokeHandler()))
		if st := r.node.State(); st != nil {
			zones := make([]admin.KVZone, 0, len(r.cfg.KVZones))
			for _, z := range r.cfg.KVZones {
				kz := admin.KVZone{Name: z.Name, TTL: z.TTL}
				if z.Name == deny.Zone {
					kz.Key = deny.CanonicalKey
				}
				zones = append(zones, kz)
			}
			kv, err := admin.NewKVHandler(admin.KVConfig{Store: st, Zones: zones, Registerer: r.reg,
				Log: r.log.WithName("kv")})
			if err != nil {
				return err
			}
			h := admin.RequireBearer(tok, kv)
			r.adm.Handle(admin.KVPrefix, h)
			r.adm.Handle(admin.KVPrefix+"/", h)
		}
	}
	r.adm.AddCheck("sessionmesh", func(context.Context) error { return r.node.Ready() })
	r.adm.AddCheck("dataplane", r.srv.Ready)
	// Ready only once the list holds what the mesh brought: the node is
	// ready after its snapshot is merged, and the list is current after
	// the compile that follows the merge. Checked in that order, a pass
	// means the snapshot's entries are in force. Later changes do not make
	// the replica unready (the follower compiles them within
	// milliseconds), so the check passes for good from the first pass.
	r.adm.AddCheck("denylist", func(context.Context) error {
		if r.denyCaughtUp.Load() {
			return nil
		}
		if err := r.node.Ready(); err != nil {
			return fmt.Errorf("deny list waits for the mesh: %w", err)
		}
		if !r.deny.Current() {
			return errors.New("deny list not compiled from the zone's latest state yet")
		}
		r.denyCaughtUp.Store(true)
		return nil
	})
	return nil
}

// apply builds every table-derived state of t, then hands each part its
// own: the listeners switch with one atomic store each. It returns false
// once Run is draining (nothing is applied any more).
func (r *Replica) apply(t *routing.Table) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return false
	}
	set := tlsconfig.Build(t, r.node) // per-SNI configs, sessions configured once per host
	r.proxy.Apply(t)                  // upstream state before requests of t can arrive
	if r.h3 != nil {
		r.h3.Apply(set) // QUIC variants and the 0-RTT policy
	}
	if err := r.l4.Update(t); err != nil {
		r.log.Error(err, "applying L4 services", "generation", t.Generation)
	}
	r.srv.Apply(set)
	// After Apply: a new frontend's first connection finds its Set.
	if err := r.srv.SetFrontends(context.Background(), server.FrontendsOf(t)); err != nil {
		r.log.Error(err, "binding Gateway frontends", "generation", t.Generation)
	}
	r.applied.Store(t)
	r.generation.Set(float64(t.Generation))
	return true
}

// follow applies each table stored in cfg.Tables after last until ctx is
// done. Tables stored in a burst may be applied as one (each is a complete
// snapshot).
func (r *Replica) follow(ctx context.Context, last *routing.Table) {
	for {
		changed := r.cfg.Tables.Changed()
		if t := r.cfg.Tables.Load(); t != nil && t != last {
			if !r.apply(t) {
				return
			}
			last = t
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// Run applies the current table, starts every listener, follows new tables
// until ctx is done, then drains in this order: readiness false; the TLS,
// HTTP, L4, passthrough and HTTP/3 listeners stop accepting and drain
// in-flight work together within ShutdownGrace; idle upstream connections
// close; the node leaves the mesh (Goodbye to peers); the admin server
// stops. A listener that fails to start stops the replica the same way and
// its error is returned. Run may be called once.
func (r *Replica) Run(ctx context.Context) error {
	// The deny list in force before the first connection is served (and
	// so before /readyz can pass); Follow keeps it current.
	denyChanged, err := r.deny.Refresh(r.node.State(), deny.Zone)
	if err != nil {
		return err
	}
	meshCtx, stopMesh := context.WithCancel(context.Background())
	defer stopMesh()
	meshDone := make(chan error, 1)
	go func() { meshDone <- r.node.Run(meshCtx) }()
	denyDone := make(chan struct{})
	go func() {
		defer close(denyDone)
		if err := r.deny.Follow(meshCtx, r.node.State(), deny.Zone, denyChanged); err != nil {
			r.log.Error(err, "deny list stopped")
		}
	}()
	defer func() { stopMesh(); <-denyDone }()

	first := r.cfg.Tables.Load()
	if first != nil {
		r.apply(first) // serve the current table from the first connection on
	}
	err = r.start(ctx)
	close(r.started)
	if err == nil {
		r.log.Info("serving", "https", r.srv.HTTPSAddr(), "http", r.srv.HTTPAddr(),
			"mesh", r.node.MeshAddr(), "http3", r.h3 != nil)
		var wg sync.WaitGroup
		wg.Go(func() { r.follow(ctx, first) })
		<-ctx.Done()
		wg.Wait()
	}
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	return errors.Join(err, r.drain(stopMesh, meshDone))
}

// start binds the admin server and the listeners.
func (r *Replica) start(ctx context.Context) error {
	if r.adm != nil {
		if err := r.adm.Start(ctx); err != nil {
			return err
		}
	}
	if err := r.srv.Start(ctx); err != nil {
		return err
	}
	if r.h3 != nil {
		if err := r.h3.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// drain stops everything; see Run.
func (r *Replica) drain(stopMesh context.CancelFunc, meshDone <-chan error) error {
	grace := r.cfg.ShutdownGrace
	r.log.Info("shutting down", "grace", grace)
	if r.adm != nil {
		r.adm.SetShuttingDown()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// Every listener kind drains at once, within the one grace period.
	stops := []func(context.Context) error{r.srv.Shutdown, r.l4.Shutdown, r.pass.Shutdown, r.h3Shutdown}
	errs := make([]error, len(stops))
	var wg sync.WaitGroup
	for i, stop := range stops {
		wg.Go(func() { errs[i] = stop(sctx) })
	}
	wg.Wait()
	r.proxy.CloseIdleConnections()
	stopMesh()
	if err := <-meshDone; err != nil {
		errs = append(errs, fmt.Errorf("session mesh: %w", err))
	}
	if r.adm != nil {
		if err := r.adm.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Replica) h3Shutdown(ctx context.Context) error {
	if r.h3 == nil {
		return nil
	}
	return r.h3.Shutdown(ctx)
}

// Applied holds the tables the data plane serves: a table is stored there
// once every part applied it. Tests wait on it (Applied().Wait) instead of
// polling the listeners.
func (r *Replica) Applied() *routing.Holder { return &r.applied }

// Started is closed once Run has bound every listener (addresses are then
// known) or failed to.
func (r *Replica) Started() <-chan struct{} { return r.started }

// Node returns the replica's session mesh node.
func (r *Replica) Node() *sessionmesh.Node { return r.node }

// HTTPSAddr returns the bound TLS listener address, nil before Run binds
// it or when disabled.
func (r *Replica) HTTPSAddr() net.Addr { return r.srv.HTTPSAddr() }

// HTTPAddr returns the bound plain HTTP listener address, or nil.
func (r *Replica) HTTPAddr() net.Addr { return r.srv.HTTPAddr() }

// HTTP3Addr returns the bound HTTP/3 UDP address, or nil.
func (r *Replica) HTTP3Addr() net.Addr {
	if r.h3 == nil {
		return nil
	}
	return r.h3.Addr()
}

// L4Addr returns the bound address of a TCP or UDP service port, or nil.
func (r *Replica) L4Addr(proto routing.L4Protocol, port int) net.Addr { return r.l4.Addr(proto, port) }

// FrontendAddr returns the bound listener address of Gateway frontend a
// (an address and port of routing.Table.Frontends), or nil when a is not
// served.
func (r *Replica) FrontendAddr(a netip.AddrPort) net.Addr { return r.srv.FrontendAddr(a) }

// FrontendL4Addr returns the bound address of a TCP or UDP port of Gateway
// frontend a, or nil.
func (r *Replica) FrontendL4Addr(a netip.Addr, proto routing.L4Protocol, port int) net.Addr {
	return r.l4.AddrOn(a, proto, port)
}

// AdminAddr returns the bound admin address, or nil.
func (r *Replica) AdminAddr() net.Addr {
	if r.adm == nil {
		return nil
	}
	return r.adm.Addr()
}

// Registry returns the registry holding every component's metrics.
func (r *Replica) Registry() *prometheus.Registry { return r.reg }

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}
