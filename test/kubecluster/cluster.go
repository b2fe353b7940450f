// Package kubecluster starts the test cluster the conformance suites and
// the Ingress end-to-end tests run against: a real kube-apiserver and etcd
// (envtest), a real kube-controller-manager (Deployments, ReplicaSets,
// EndpointSlices, namespace deletion, garbage collection), all built from
// the Go module proxy by hack/envtest-assets.sh, and the node agent of
// test/nodeagent, which schedules Pods and runs their images' stand-ins as
// processes in network namespaces (hack/conformance-images.sh builds the
// Gateway API echo server; test/images holds stand-ins of our own).
//
// Starting a cluster creates network namespaces and binds addresses in
// 198.18.128.0/17: run it only under the heavy-test lock
// (flock /tmp/meshgate-heavy.lock). Nothing is safe for concurrent use
// unless stated otherwise; one test binary owns one cluster.
package kubecluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshgate/meshgate/test/harness"
	"github.com/meshgate/meshgate/test/nodeagent"
)

// Image references the suites deploy, mapped to stand-ins by Start.
const (
	// GatewayEchoImage is the Gateway API conformance echo server, every tag.
	GatewayEchoImage = "registry.k8s.io/gateway-api/echo-basic"
	// IngressEchoImage is the echo server of ingress-controller-conformance
	// (its test/kubernetes deployment template); it reports the same JSON
	// fields as GatewayEchoImage, which descends from it, and runs as that.
	IngressEchoImage = "aledbf/echoserver"
	// IngressEchoImageStaging is the same server under its staging name.
	IngressEchoImageStaging = "gcr.io/k8s-staging-ingressconformance/echoserver"
	// CoreDNSImage is the UDPRoute backend of the Gateway API suite; it runs
	// as test/images/dnswhoami, which never forwards.
	CoreDNSImage = "registry.k8s.io/coredns/coredns"
)

// Options configures Start. Dir is required.
type Options struct {
	// Dir holds logs, the kubeconfig and the node agent's state.
	Dir string
	// CRDDirs are installed before Start returns (files or directories of
	// CRD manifests).
	CRDDirs []string
	// Images adds or overrides image stand-ins.
	Images map[string]nodeagent.Image
}

// Cluster is a running test cluster.
type Cluster struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of the same credentials as a kubeconfig file,
	// for processes (meshgate run, kube-controller-manager).
	Kubeconfig string
	Clientset  kubernetes.Interface
	Agent      *nodeagent.Agent
	// ControllerManager is the kube-controller-manager process.
	ControllerManager *harness.Proc
	dir               string
	env               *envtest.Environment
}

// Diagnose returns the ends of the controller manager's and the node
// agent's logs, for failure messages.
func (c *Cluster) Diagnose() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- kube-controller-manager (%s):\n%s\n", c.ControllerManager.LogPath, c.ControllerManager.Tail(3000))
	agentLog := filepath.Join(c.dir, "nodeagent.log")
	if data, err := os.ReadFile(agentLog); err == nil {
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- node agent (%s):\n%s", agentLog, data)
	}
	return b.String()
}

// Start runs the cluster and registers its teardown with t. It returns once
// the Node is registered and the controllers run.
func Start(t harness.T, opts Options) (*Cluster, error) {
	t.Helper()
	if opts.Dir == "" {
		return nil, errors.New("kubecluster: Options.Dir is required")
	}
	assets, err := runScript("KUBEBUILDER_ASSETS", "envtest-assets.sh")
	if err != nil {
		return nil, err
	}
	images, err := defaultImages(opts.Dir)
	if err != nil {
		return nil, err
	}
	for k, v := range opts.Images {
		images[k] = v
	}
	agentLog, err := os.OpenFile(filepath.Join(opts.Dir, "nodeagent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	t.Cleanup(func() { _ = agentLog.Close() })
	agent, err := nodeagent.New(nodeagent.Config{
		Images:  images,
		WorkDir: filepath.Join(opts.Dir, "node"),
		Logger: funcr.New(func(prefix, args string) {
			fmt.Fprintf(agentLog, "%s %s %s\n", time.Now().Format(time.RFC3339Nano), prefix, args)
		}, funcr.Options{}),
	})
	if err != nil {
		return nil, err
	}
	net := nodeagent.DefaultNetwork
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     opts.CRDDirs,
		ErrorIfCRDPathMissing: true,
	}
	args := env.ControlPlane.GetAPIServer().Configure()
	args.Set("service-cluster-ip-range", net.ServiceCIDR.String())
	args.Set("kubelet-certificate-authority", agent.CAFile())
	args.Set("kubelet-preferred-address-types", "InternalIP")
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("kubecluster: start control plane from %s: %w", assets, err)
	}
	c := &Cluster{Config: cfg, Agent: agent, env: env, dir: opts.Dir, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig")}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("kubecluster: stop control plane: %v", err)
		}
	})
	if err := os.WriteFile(c.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	if c.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	if c.ControllerManager, err = startControllerManager(t, opts.Dir, assets, c.Kubeconfig); err != nil {
		return nil, err
	}
	if err := c.runAgent(t); err != nil {
		return nil, err
	}
	return c, nil
}

// runAgent runs the node agent until t's cleanup.
func (c *Cluster) runAgent(t harness.T) error {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- c.Agent.Run(ctx, c.Config, ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("kubecluster: node agent: %v", err)
		}
	})
	select {
	case <-ready:
		return nil
	case err := <-done:
		return fmt.Errorf("kubecluster: node agent: %w", err)
	case <-time.After(time.Minute):
		return errors.New("kubecluster: node agent did not register its Node within a minute")
	}
}

// Controllers kube-controller-manager runs: what turns Deployments into
// Pods and Pods into EndpointSlices, and what empties a deleted namespace.
const Controllers = "deployment,replicaset,endpointslice,namespace,garbagecollector"

func startControllerManager(t harness.T, dir, assets, kubeconfig string) (*harness.Proc, error) {
	p, err := harness.Start(t, dir, "kube-controller-manager", filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--controllers="+Controllers,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--concurrent-namespace-syncs=5",
		"--v=1",
	)
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	return p, nil
}

// defaultImages builds (or finds cached) every stand-in the suites need.
func defaultImages(dir string) (map[string]nodeagent.Image, error) {
	imgDir, err := runScript("MESHGATE_IMAGES_DIR", "conformance-images.sh")
	if err != nil {
		return nil, err
	}
	echo := nodeagent.Image{Binary: filepath.Join(imgDir, "echo-basic"), Path: "/echo-basic"}
	dns := filepath.Join(dir, "bin", "dnswhoami")
	if err := buildStatic("./test/images/dnswhoami", dns); err != nil {
		return nil, err
	}
	return map[string]nodeagent.Image{
		GatewayEchoImage:        echo,
		IngressEchoImage:        echo,
		IngressEchoImageStaging: echo,
		CoreDNSImage:            {Binary: dns, Path: "/coredns"},
	}, nil
}

// runScript returns $envVar when set, else the directory hack/<script>
// prints (building what is missing).
func runScript(envVar, script string) (string, error) {
	if d := os.Getenv(envVar); d != "" {
		return d, nil
	}
	root, err := harness.RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", script))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubecluster: %s unset and hack/%s failed: %w", envVar, script, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildStatic builds a package of this module as a static binary (the
// node agent runs it chrooted into a root holding nothing else).
func buildStatic(pkg, out string) error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubecluster: go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
