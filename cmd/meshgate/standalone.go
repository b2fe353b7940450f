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

	"github.com/go-logr/logr"

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
	meshDir := fs.String("mesh-dir", "", "directory holding the mesh CA material (ca.crt, ca.key; trust.crt and the rest after a rotation) from `meshgate mesh-ca`; required with --mesh-addr, re-read on SIGHUP")
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
		if deps.identity, err = loadMeshDir(*meshDir); err != nil {
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
				if deps.identity != nil {
					reloadMeshDir(*meshDir, deps.identity, log)
				}
			case <-srcCtx.Done():
				return
			}
		}
	}()

	err = runReplica(ctx, &f, log, holder, deps)
	stopSrc()
	return errors.Join(err, <-srcDone)
}

// loadMeshDir reads the mesh CA material of --mesh-dir.
func loadMeshDir(dir string) (*pki.Identity, error) {
	m, err := pki.LoadMaterial(dir)
	if err != nil {
		return nil, err
	}
	b, err := m.Parse()
	if err != nil {
		return nil, err
	}
	return pki.NewIdentity(b), nil
}

// reloadMeshDir re-reads --mesh-dir (on SIGHUP, after a `meshgate mesh-ca
// rotate --dir` step was copied to this host) and updates id; material
// that does not parse is logged and the material in force stays.
func reloadMeshDir(dir string, id *pki.Identity, log logr.Logger) {
	m, err := pki.LoadMaterial(dir)
	if err == nil {
		var b *pki.Bundle
		if b, err = m.Parse(); err == nil {
			var changed bool
			if changed, err = id.Update(b); changed {
				log.Info("mesh CA material updated", "phase", b.Phase(), "generation", b.Generation(),
					"signing", b.Signing().Fingerprint())
			}
		}
	}
	if err != nil {
		log.Error(err, "--mesh-dir refused; keeping the mesh CA material in force")
	}
}
