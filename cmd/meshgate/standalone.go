package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshgate/meshgate/internal/replica"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/source/standalone"
)

// standaloneMain implements `meshgate standalone`: Kubernetes manifests read
// from files, static mesh peers, no cluster.
func standaloneMain(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("standalone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs)
	manifests := fs.String("manifests", "", "file or directory of Kubernetes YAML manifests (required)")
	peers := fs.String("peers", "", "comma-separated mesh peer addresses (host:port); our own address is ignored")
	meshDir := fs.String("mesh-dir", "", "directory holding the mesh CA (ca.crt, ca.key) from `meshgate mesh-ca`; required with --mesh-addr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *manifests == "" {
		return errors.New("--manifests is required")
	}
	if err := f.validate(); err != nil {
		return err
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	deps := planeDeps{reg: replica.NewRegistry()}
	if f.meshAddr != "" {
		if *meshDir == "" {
			return errors.New("--mesh-addr needs --mesh-dir (create one with `meshgate mesh-ca --out DIR`)")
		}
		if deps.ca, err = pki.LoadCA(*meshDir); err != nil {
			return fmt.Errorf("--mesh-dir: %w", err)
		}
		deps.peers = sessionmesh.StaticPeers(splitList(*peers))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	holder := &routing.Holder{}
	src, err := standalone.New(standalone.Config{
		Path:       *manifests,
		Holder:     holder,
		Build:      f.buildOptions(),
		Log:        log.WithName("standalone"),
		Registerer: deps.reg,
	})
	if err != nil {
		return err
	}
	srcCtx, stopSrc := context.WithCancel(context.Background())
	defer stopSrc()
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(srcCtx) }()

	// A bad manifest at start is fatal and named; on later reloads it only
	// keeps the last good table serving.
	select {
	case <-src.Synced():
	case <-ctx.Done():
		return nil
	}
	if err := src.LastError(); err != nil {
		return err
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: reloading manifests")
				src.Reload()
			case <-srcCtx.Done():
				return
			}
		}
	}()

	err = runReplica(ctx, &f, log, holder, deps)
	stopSrc()
	return errors.Join(err, <-srcDone)
}
