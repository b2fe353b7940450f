package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshgate/meshgate/internal/dataplane/admin"
	"github.com/meshgate/meshgate/internal/dataplane/http3"
	"github.com/meshgate/meshgate/internal/dataplane/l4"
	"github.com/meshgate/meshgate/internal/dataplane/proxy"
	"github.com/meshgate/meshgate/internal/dataplane/server"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
)

// plane is one replica's data plane: listeners, L4 services, HTTP/3, the
// session mesh node and the admin server, all reading one routing.Holder.
// Data flows one way: a source stores tables into holder; the plane only
// reads, woken by the holder's sequence.
type plane struct {
	log    logr.Logger
	holder *routing.Holder
	reg    *prometheus.Registry

	node  *sessionmesh.Node
	srv   *server.Server
	h3    *http3.Server // nil without --http3
	l4    *l4.Manager
	pass  *l4.Passthrough
	adm   *admin.Server // nil without --metrics-addr
	proxy *proxy.Handler

	pprofAddr string // --pprof-addr; "" disables
}

// planeDeps are what the two modes supply beyond the common flags.
type planeDeps struct {
	peers sessionmesh.PeerSource // nil: no peers
	ca    *pki.CA                // nil: local-only session store
	reg   *prometheus.Registry   // required: every component's metrics
}

// newRegistry returns the process's metrics registry (no global registry:
// each process, and each test, owns its own).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func newPlane(f *commonFlags, log logr.Logger, holder *routing.Holder, deps planeDeps) (*plane, error) {
	trusted, err := f.trustedPrefixes()
	if err != nil {
		return nil, err
	}
	reg := deps.reg
	p := &plane{log: log, holder: holder, reg: reg, pprofAddr: f.pprofAddr}

	meshAddr := f.meshAddr
	if deps.ca == nil {
		meshAddr = "" // no PKI, no mesh: sessions resume on this replica only
	}
	p.node, err = sessionmesh.New(sessionmesh.Config{
		NodeName:         f.nodeName,
		ClusterID:        f.clusterID,
		ListenAddr:       meshAddr,
		Peers:            deps.peers,
		CA:               deps.ca,
		StoreBudgetBytes: f.sessionBudget,
		Registerer:       reg,
		Log:              log.WithName("sessionmesh"),
	})
	if err != nil {
		return nil, err
	}

	httpsPort := portOf(f.httpsAddr)
	redirectPort := f.redirectPort
	if redirectPort == 0 {
		redirectPort = httpsPort
	}
	forwarders, err := f.forwarderPrefixes()
	if err != nil {
		return nil, err
	}
	altSvc := "" // advertise HTTP/3 on TLS responses when it is served
	if f.http3 {
		altSvc = http3.AltSvcValue(httpsPort)
	}
	p.proxy, err = proxy.New(proxy.Config{
		Table: holder, HTTPSPort: redirectPort, TrustedForwarders: forwarders, AltSvc: altSvc,
		Registerer: reg, Log: log.WithName("proxy"),
	})
	if err != nil {
		return nil, err
	}
	handler := p.proxy

	l4m, err := l4.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	p.pass = l4.NewPassthrough(l4.PassthroughConfig{PeekTimeout: -1, Metrics: l4m, Log: log.WithName("passthrough")})
	bind := f.l4BindIP
	if bind == "" {
		bind = hostOf(f.httpsAddr)
	}
	p.l4 = l4.NewManager(l4.ManagerConfig{
		BindIP: bind, AcceptProxyProtocol: f.proxyProtocol, TrustedProxies: trusted,
		Metrics: l4m, Log: log.WithName("l4"),
	})

	p.srv, err = server.New(server.Config{
		Table:             holder,
		HTTPSAddr:         f.httpsAddr,
		HTTPAddr:          f.httpAddr,
		ProxyProtocol:     f.proxyProtocol,
		TrustedProxies:    trusted,
		Sessions:          p.node,
		SessionIDs:        p.node,
		PreTLS:            p.pass.Route,
		ReadHeaderTimeout: f.headerTimeout,
		IdleTimeout:       f.idleTimeout,
		MaxConns:          f.maxConns,
		Handler:           handler,
		Registerer:        reg,
		Log:               log.WithName("server"),
	})
	if err != nil {
		return nil, err
	}
	if f.http3 {
		allow0RTT, any0RTT := http3.TablePolicy(holder)
		p.h3, err = http3.New(http3.Config{
			Addr: f.httpsAddr, TLSConfig: p.srv.TLSConfig(), Handler: handler,
			Allow0RTT: allow0RTT, Any0RTT: any0RTT,
			Registerer: reg, Log: log.WithName("http3"),
		})
		if err != nil {
			return nil, err
		}
	}
	if f.metricsAddr != "" {
		p.adm = admin.New(admin.Config{Addr: f.metricsAddr, Gatherer: reg})
		p.adm.Handle("/status/sessionmesh", p.node.StatusHandler())
		p.adm.AddCheck("sessionmesh", func(context.Context) error { return p.node.Ready() })
		p.adm.AddCheck("dataplane", p.srv.Ready)
	}
	return p, nil
}

// run starts everything, serves until ctx is done, then drains: readiness
// false → stop accepting → drain in-flight requests within grace → leave
// the mesh → return.
func (p *plane) run(ctx context.Context, grace time.Duration) error {
	applyGCDefault(p.log)
	meshCtx, stopMesh := context.WithCancel(context.Background())
	defer stopMesh()
	meshDone := make(chan error, 1)
	go func() { meshDone <- p.node.Run(meshCtx) }()

	if p.adm != nil {
		if err := p.adm.Start(ctx); err != nil {
			return err
		}
	}
	if p.pprofAddr != "" {
		stopPprof, err := startPprof(ctx, p.pprofAddr, p.log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	if err := p.srv.Start(ctx); err != nil {
		return err
	}
	if p.h3 != nil {
		if err := p.h3.Start(ctx); err != nil {
			return err
		}
	}
	p.log.Info("serving", "https", p.srv.HTTPSAddr(), "http", p.srv.HTTPAddr(), "mesh", p.node.MeshAddr(), "http3", p.h3 != nil)

	var wg sync.WaitGroup
	wg.Go(func() { p.followTables(ctx) })
	<-ctx.Done()
	wg.Wait()

	p.log.Info("shutting down", "grace", grace)
	if p.adm != nil {
		p.adm.SetShuttingDown()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// Every listener kind drains at once, within the one grace period.
	stops := []func(context.Context) error{p.srv.Shutdown, p.l4.Shutdown, p.pass.Shutdown, p.h3Shutdown}
	results := make([]error, len(stops))
	var sw sync.WaitGroup
	for i, stop := range stops {
		sw.Go(func() { results[i] = stop(sctx) })
	}
	sw.Wait()
	errs := results
	p.proxy.CloseIdleConnections()
	stopMesh()
	if err := <-meshDone; err != nil {
		errs = append(errs, fmt.Errorf("session mesh: %w", err))
	}
	if p.adm != nil {
		if err := p.adm.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *plane) h3Shutdown(ctx context.Context) error {
	if p.h3 == nil {
		return nil
	}
	return p.h3.Shutdown(ctx)
}

// followTables applies each new table to the parts that hold state per
// table (upstream state of the proxy, L4 listeners). The HTTP and TLS
// paths read the holder directly.
func (p *plane) followTables(ctx context.Context) {
	for {
		changed := p.holder.Changed()
		if t := p.holder.Load(); t != nil {
			p.proxy.Prepare(t) // upstream state now, not on the first request
			if err := p.l4.Update(t); err != nil {
				p.log.Error(err, "applying L4 services", "generation", t.Generation)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// defaultGCPercent is the garbage collector target used when GOGC is not
// set: the data plane's heap is small and mostly short-lived per-request
// garbage, so trading some memory for fewer collections cuts CPU per
// request and per handshake. GOGC (and GOMEMLIMIT) in the environment
// override it as usual.
const defaultGCPercent = 200

// applyGCDefault sets defaultGCPercent unless the operator set GOGC.
func applyGCDefault(log logr.Logger) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(defaultGCPercent)
	log.V(1).Info("GC target set", "gcPercent", defaultGCPercent)
}

// startPprof serves net/http/pprof on its own listener at addr (opt-in
// profiling, kept off the admin and traffic ports). The returned function
// closes it; it is safe to call once.
func startPprof(ctx context.Context, addr string, log logr.Logger) (func(), error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "pprof server stopped")
		}
	}()
	log.Info("serving pprof", "addr", ln.Addr().String())
	return func() {
		_ = hs.Close()
		<-done
	}, nil
}

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
