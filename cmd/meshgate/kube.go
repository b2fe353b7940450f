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
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshgate/meshgate/internal/replica"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/source/kube"
)

// kubeMain implements `meshgate run`: the controllers feed the data plane
// from a Kubernetes cluster, peers come from the mesh Service's
// EndpointSlices and the mesh CA material from a Secret, re-read while it
// runs.
func kubeMain(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG)")
	namespace := fs.String("watch-namespace", "", "watch only this namespace (default: all)")
	publishService := fs.String("publish-service", "", "namespace/name of meshgate's LoadBalancer Service whose addresses go into Ingress status")
	publishAddr := fs.String("publish-status-address", "", "comma-separated fixed addresses for Ingress status (overrides --publish-service)")
	leaderElect := fs.Bool("leader-elect", false, "elect one replica (Lease) to write status and create the mesh CA")
	leaderNS := fs.String("leader-election-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the leader Lease (default $POD_NAMESPACE)")
	meshService := fs.String("mesh-service", "", "namespace/name of the headless Service listing mesh peers (port named \"mesh\")")
	meshCASecret := fs.String("mesh-ca-secret", "", "namespace/name of the mesh CA Secret (created by the leader when absent; re-read every --mesh-ca-reload, see `meshgate mesh-ca rotate`)")
	meshCAReload := fs.Duration("mesh-ca-reload", 10*time.Second, "how often the mesh CA Secret is re-read (a CA rotation step reaches every replica within it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.validate(); err != nil {
		return err
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	holder := &routing.Holder{}
	ctl, err := kube.New(cfg, kube.Options{
		Holder:                  holder,
		Build:                   f.buildOptions(),
		Namespace:               *namespace,
		PublishService:          *publishService,
		PublishStatusAddress:    splitList(*publishAddr),
		LeaderElect:             *leaderElect,
		LeaderElectionNamespace: *leaderNS,
		MeshService:             *meshService,
		MeshCASecret:            *meshCASecret,
		MeshCAReload:            *meshCAReload,
		Logger:                  log.WithName("controller"),
	})
	if err != nil {
		return err
	}
	// The controller stops the data plane when it fails (e.g. it lost the
	// leader Lease): the process then drains and exits, and restarts clean.
	ctlDone := make(chan error, 1)
	ctlCtx, stopCtl := context.WithCancel(context.Background())
	defer stopCtl()
	planeCtx, stopPlane := context.WithCancel(ctx)
	defer stopPlane()
	go func() {
		err := ctl.Start(ctlCtx)
		if err != nil {
			log.Error(err, "controller stopped; shutting down")
		}
		stopPlane()
		ctlDone <- err
	}()

	deps := planeDeps{reg: replica.NewRegistry()}
	if *meshService != "" {
		deps.peers = kube.PeerSource(ctl.Peers())
	}
	if *meshCASecret != "" && f.meshAddr != "" {
		caCtx, cancel := context.WithTimeout(planeCtx, 2*time.Minute)
		deps.identity, err = ctl.MeshIdentity(caCtx)
		cancel()
		if err != nil {
			return err
		}
	}
	err = runReplica(planeCtx, &f, log, holder, deps)
	stopCtl()
	return errors.Join(err, <-ctlDone)
}

// restConfig loads --kubeconfig, else the in-cluster config, else the
// default loading rules ($KUBECONFIG, ~/.kube/config).
func restConfig(path string) (*rest.Config, error) {
	if path != "" {
		c, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		return c, nil
	}
	if c, err := rest.InClusterConfig(); err == nil {
		return c, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no in-cluster config and no kubeconfig: %w", err)
	}
	return c, nil
}
