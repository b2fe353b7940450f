package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Image is the stand-in for a container image: a host binary that the
// agent places into the Pod root.
type Image struct {
	// Binary is the host path of the executable (static: it runs chrooted
	// into a root holding nothing else).
	Binary string
	// Path is where the binary sits inside the Pod root, the image's
	// entrypoint. A container that sets command must name it as
	// command[0]. Default: "/" + the binary's base name.
	Path string
	// Args are the image's default arguments (its CMD), used when the
	// container sets neither command nor args.
	Args []string
	// Env is the image's environment (KEY=VALUE), overridden by the
	// container's.
	Env []string
}

// Config configures an Agent. Images and WorkDir are required.
type Config struct {
	// NodeName is the Node the agent registers (default "meshgate-node").
	NodeName string
	// Images maps an image reference without tag or digest (for example
	// "registry.k8s.io/gateway-api/echo-basic") to its stand-in. Every tag
	// of the reference maps to the same binary.
	Images map[string]Image
	// WorkDir holds Pod roots, volumes, logs and the kubelet certificate.
	WorkDir string
	// Network is where Pods live (zero: DefaultNetwork).
	Network Network
	// ProbePeriod is how often readiness is checked (default 200 ms,
	// whatever the Pod's periodSeconds: a test cluster converges fast).
	ProbePeriod time.Duration
	// MaxGrace caps terminationGracePeriodSeconds (default 2 s).
	MaxGrace time.Duration
	// Logger receives what the agent does (default: discard).
	Logger logr.Logger
}

// Node capacity the agent reports (and what unset limits resolve to).
const (
	nodeCPU    = "2"
	nodeMemory = "8Gi"
	nodePods   = "250"
)

// Agent is a running node. Create it with New, start it with Run.
type Agent struct {
	cfg     Config
	cs      kubernetes.Interface // set by Run
	log     logr.Logger
	pki     *kubeletPKI
	ips     *ipPool
	queue   workqueue.TypedRateLimitingInterface[string]
	lister  corelisters.PodLister
	kubelet kubeletServer

	mu   sync.Mutex
	pods map[string]*podState // by namespace/name
}

// New checks cfg and creates the kubelet certificate (see CAFile), so that
// the API server can be started with --kubelet-certificate-authority before
// Run. It changes nothing on the host.
func New(cfg Config) (*Agent, error) {
	if cfg.WorkDir == "" {
		return nil, errors.New("nodeagent: WorkDir is required")
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "meshgate-node"
	}
	if cfg.ProbePeriod <= 0 {
		cfg.ProbePeriod = 200 * time.Millisecond
	}
	if cfg.MaxGrace <= 0 {
		cfg.MaxGrace = 2 * time.Second
	}
	if cfg.Logger.GetSink() == nil {
		cfg.Logger = logr.Discard()
	}
	var err error
	if cfg.Network, err = cfg.Network.withDefaults(); err != nil {
		return nil, err
	}
	for ref, img := range cfg.Images {
		if img.Path == "" {
			img.Path = "/" + filepath.Base(img.Binary)
			cfg.Images[ref] = img
		}
		if _, err := os.Stat(img.Binary); err != nil {
			return nil, fmt.Errorf("nodeagent: stand-in of image %s: %w", ref, err)
		}
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("nodeagent: %w", err)
	}
	pki, err := newKubeletPKI(cfg.WorkDir, cfg.Network.HostIP())
	if err != nil {
		return nil, err
	}
	return &Agent{
		cfg:  cfg,
		log:  cfg.Logger,
		pki:  pki,
		ips:  newIPPool(cfg.Network.PodCIDR),
		pods: map[string]*podState{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 2*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodeagent"}),
	}, nil
}

// CAFile is the PEM file of the CA that signed the agent's kubelet serving
// certificate: the API server's --kubelet-certificate-authority.
func (a *Agent) CAFile() string { return a.pki.caFile }

// NodeName is the registered Node's name.
func (a *Agent) NodeName() string { return a.cfg.NodeName }

// HostIP is the node's address: Pods' gateway and the kubelet endpoint.
func (a *Agent) HostIP() netip.Addr { return a.cfg.Network.HostIP() }

// Run removes stale state of an earlier run, creates the bridge, serves
// the kubelet endpoint, registers the Node with the API server rc points
// at and runs Pods until ctx ends; then it stops every Pod, removes their
// namespaces and the bridge, and returns. ready (may be nil) is closed once
// the Node is registered and the Pod informer has synced. Run is called
// once.
func (a *Agent) Run(ctx context.Context, rc *rest.Config, ready chan<- struct{}) error {
	cs, err := kubernetes.NewForConfig(rest.CopyConfig(rc))
	if err != nil {
		return fmt.Errorf("nodeagent: %w", err)
	}
	a.cs = cs
	if err := a.cfg.Network.setupHost(); err != nil {
		return err
	}
	defer func() {
		if err := a.cfg.Network.cleanupHost(); err != nil {
			a.log.Error(err, "host cleanup")
		}
	}()
	if err := a.kubelet.start(a, a.HostIP()); err != nil {
		return err
	}
	defer a.kubelet.stop()
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(a.cs, 0)
	inf := factory.Core().V1().Pods()
	a.lister = inf.Lister()
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.enqueue,
		UpdateFunc: func(_, obj any) { a.enqueue(obj) },
		DeleteFunc: a.enqueue,
	}); err != nil {
		return fmt.Errorf("nodeagent: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return fmt.Errorf("nodeagent: pod informer did not sync: %w", ctx.Err())
	}
	if ready != nil {
		close(ready)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for a.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	a.queue.ShutDown()
	wg.Wait()
	a.stopAll()
	return nil
}

func (a *Agent) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		a.queue.Add(key)
	}
}

func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	retry, err := a.sync(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		a.log.Info("sync failed; retrying", "pod", key, "error", err.Error())
		a.queue.AddRateLimited(key)
	case retry > 0:
		a.queue.Forget(key)
		a.queue.AddAfter(key, retry)
	default:
		a.queue.Forget(key)
	}
	return true
}

// registerNode creates (or refreshes) the Node with a Ready status.
func (a *Agent) registerNode(ctx context.Context) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(nodeCPU),
		corev1.ResourceMemory: resource.MustParse(nodeMemory),
		corev1.ResourcePods:   resource.MustParse(nodePods),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: map[string]string{
			"kubernetes.io/hostname": a.cfg.NodeName,
			"kubernetes.io/os":       "linux",
			"kubernetes.io/arch":     "amd64",
		}},
		Spec: corev1.NodeSpec{PodCIDR: a.cfg.Network.PodCIDR.String(), PodCIDRs: []string{a.cfg.Network.PodCIDR.String()}},
	}
	nodes := a.cs.CoreV1().Nodes()
	got, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("nodeagent: register node: %w", err)
	}
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	got.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
		},
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: a.HostIP().String()}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.kubelet.port)}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          "meshgate-nodeagent",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
			ContainerRuntimeVersion: "meshgate-nodeagent://processes",
		},
	}
	if _, err := nodes.UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("nodeagent: node status: %w", err)
	}
	return nil
}

// imageFor finds the stand-in of an image reference.
func (a *Agent) imageFor(ref string) (Image, bool) {
	img, ok := a.cfg.Images[imageRepo(ref)]
	return img, ok
}

// imageRepo strips the tag and digest of an image reference.
func imageRepo(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	slash := strings.LastIndexByte(ref, '/')
	if colon := strings.LastIndexByte(ref, ':'); colon > slash {
		ref = ref[:colon]
	}
	return ref
}
