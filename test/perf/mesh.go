package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// meshWorkers is the concurrency of the mesh scenario (test/bench's
// headline uses 8 reconnecting clients too).
const meshWorkers = 8

// runMesh is the "mesh" scenario: three meshgate replicas sharing sessions
// over the mesh behind HAProxy (round robin, PROXY v2), clients reconnecting
// with one session each (test/bench's headline load). It prints connections
// per second, resumption and CPU ticks per 1000 connections summed over the
// replicas, and with --profile saves a CPU profile of every replica.
func runMesh(ctx context.Context, o options, bins harness.Bins, dir string, pki *harness.PKI, echo *harness.Echo) error {
	r := &harness.Runner{Out: os.Stderr}
	defer r.Close()
	mdir := filepath.Join(dir, "mesh")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return err
	}
	manifests, err := harness.Manifests{EchoAddr: echo.HTTPAddr, SecretYAML: pki.SecretYAML}.Write(filepath.Join(mdir, "manifests"))
	if err != nil {
		return err
	}
	c, err := harness.StartCluster(r, harness.ClusterConfig{Bins: bins, Dir: mdir, ManifestDir: manifests, Replicas: 3,
		ProxyProtocol: true, Pprof: true, ExtraArgs: o.extra}, 30*time.Second)
	if err != nil {
		return err
	}
	lb, err := harness.StartHAProxy(r, mdir, "haproxy-perf", "127.0.0.30", c.HTTPSAddrs(), true)
	if err != nil {
		return err
	}
	pprofs := make([]string, len(c.Replicas))
	for i, rep := range c.Replicas {
		pprofs[i] = rep.PprofAddr
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg, err := pki.ClientConfig(v)
		if err != nil {
			return err
		}
		var total harness.Stats
		var ticks int64
		for round := range o.rounds {
			perWorker := max(1, int(o.dur.Seconds())*700/meshWorkers)
			var before int64
			profDone := make(chan error, len(pprofs))
			st := harness.Load(ctx, cfg, lb.Addr, meshWorkers, perWorker, func() {
				before = cpuSum(c)
				for i, a := range pprofs {
					if o.profileDir == "" {
						profDone <- nil
						continue
					}
					path := filepath.Join(o.profileDir, fmt.Sprintf("mesh-%s-%s-%d.pprof", tls.VersionName(v), c.Replicas[i].Name, round))
					go func() { profDone <- harness.CPUProfile(ctx, a, int(o.dur.Seconds()), path) }()
				}
			})
			ticks += cpuSum(c) - before
			for range pprofs {
				if err := <-profDone; err != nil {
					return err
				}
			}
			total.Add(st)
		}
		fmt.Printf("mesh   %-7s %9.0f conn/s %5.1f%% resumed %7.1f ticks/1000 conns (3 replicas) errors %d\n",
			tls.VersionName(v), total.PerSecond(), total.Rate(), float64(ticks)*1000/float64(max(total.Conns, 1)), total.Errors)
	}
	return nil
}

func cpuSum(c *harness.Cluster) int64 {
	var sum int64
	for _, rep := range c.Replicas {
		n, _ := rep.Proc.CPUTicks()
		sum += n
	}
	return sum
}
