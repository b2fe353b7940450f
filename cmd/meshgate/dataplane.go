package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/replica"
	"github.com/meshgate/meshgate/internal/resources"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
)

// planeDeps are what the two modes supply beyond the common flags.
type planeDeps struct {
	peers    sessionmesh.PeerSource // nil: no peers
	identity *pki.Identity          // nil: local-only session store
	reg      *prometheus.Registry   // required: every component's metrics
}

// runReplica builds the replica the flags describe, serving the tables the
// source stores into holder, and runs it until ctx is done (see
// replica.Replica.Run for the drain order).
func runReplica(ctx context.Context, f *commonFlags, log logr.Logger, holder *routing.Holder, deps planeDeps) error {
	trusted, err := f.trustedPrefixes()
	if err != nil {
		return err
	}
	forwarders, err := f.forwarderPrefixes()
	if err != nil {
		return err
	}
	r, err := replica.New(replica.Config{
		Tables:               holder,
		NodeName:             f.nodeName,
		ClusterID:            f.clusterID,
		MeshAddr:             f.meshAddr,
		Peers:                deps.peers,
		Identity:             deps.identity,
		SessionStoreBytes:    f.sessionBudget,
		HTTPSAddr:            f.httpsAddr,
		HTTPAddr:             f.httpAddr,
		ProxyProtocol:        f.proxyProtocol,
		TrustedProxies:       trusted,
		TrustedForwarders:    forwarders,
		UnderscoresInHeaders: f.underscores,
		RedirectPort:         f.redirectPort,
		ReadHeaderTimeout:    f.headerTimeout,
		IdleTimeout:          f.idleTimeout,
		MaxConns:             f.maxConns,
		HTTP3:                f.http3,
		L4BindIP:             f.l4BindIP,
		MetricsAddr:          f.metricsAddr,
		AdminTokenFile:       f.adminToken,
		KVZones:              f.kvZones,
		ShutdownGrace:        f.shutdownGrace,
		Registry:             deps.reg,
		Log:                  log,
	})
	if err != nil {
		return err
	}
	if _, err := resources.Apply(resources.Config{}, log); err != nil {
		log.Error(err, "runtime settings") // the Go defaults stay in force
	}
	if f.followLoad {
		procsCtx, stopProcs := context.WithCancel(ctx)
		procsDone := make(chan struct{})
		go func() {
			defer close(procsDone)
			resources.Procs(procsCtx, resources.ProcsConfig{}, log.WithName("gomaxprocs"))
		}()
		defer func() { stopProcs(); <-procsDone }()
	}
	if f.pprofAddr != "" {
		stopPprof, err := startPprof(ctx, f.pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	return r.Run(ctx)
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
