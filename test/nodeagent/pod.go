package nodeagent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// podState is what the agent runs for one Pod. Fields other than
// containers are set once by startPod.
type podState struct {
	key        string
	uid        types.UID
	ip         netip.Addr
	netns      string
	dir        string // pod work dir (root/, volumes/)
	logDir     string
	root       string
	started    metav1.Time
	containers []*containerState
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// pendingRetry is how soon a Pod that could not start (a missing Secret,
// an unmapped image) is tried again.
const pendingRetry = 2 * time.Second

// sync brings the node in line with Pod key. It returns a delay after
// which the key should be synced again (0: only on the next event).
func (a *Agent) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := splitKey(key)
	if err != nil {
		return 0, err
	}
	pod, err := a.lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		a.teardown(key, 0)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if pod.Spec.NodeName == "" {
		return 0, a.bind(ctx, pod)
	}
	if pod.Spec.NodeName != a.cfg.NodeName {
		return 0, nil
	}
	st := a.podFor(key)
	if st != nil && st.uid != pod.UID {
		a.teardown(key, 0)
		st = nil
	}
	if pod.DeletionTimestamp != nil {
		a.teardown(key, a.grace(pod))
		err := a.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			err = nil
		}
		return 0, err
	}
	if isTerminal(pod) {
		return 0, nil
	}
	if st == nil {
		st, err = a.startPod(ctx, pod)
		if err != nil {
			a.log.Info("pod not started", "pod", key, "reason", err.Error())
			return pendingRetry, a.writeStatus(ctx, pod, pendingStatus(pod, err))
		}
	}
	return 0, a.writeStatus(ctx, pod, a.runningStatus(pod, st))
}

func isTerminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

func splitKey(key string) (string, string, error) {
	for i := range len(key) {
		if key[i] == '/' {
			return key[:i], key[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("pod key %q has no namespace", key)
}

func (a *Agent) grace(pod *corev1.Pod) time.Duration {
	g := a.cfg.MaxGrace
	if s := pod.DeletionGracePeriodSeconds; s != nil && time.Duration(*s)*time.Second < g {
		g = time.Duration(*s) * time.Second
	}
	return g
}

// bind is the scheduler: every Pod for the default scheduler lands here.
func (a *Agent) bind(ctx context.Context, pod *corev1.Pod) error {
	if s := pod.Spec.SchedulerName; s != "" && s != corev1.DefaultSchedulerName {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		return nil
	}
	err := a.cs.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.cfg.NodeName},
	}, metav1.CreateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // bound meanwhile, or gone
	}
	return err
}

func (a *Agent) podFor(key string) *podState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pods[key]
}

// startPod sets up the Pod's network, root and volumes and starts its
// containers. On error nothing of it is left behind.
func (a *Agent) startPod(ctx context.Context, pod *corev1.Pod) (_ *podState, err error) {
	if err := checkSupported(pod); err != nil {
		return nil, err
	}
	images := make([]Image, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		img, ok := a.imageFor(c.Image)
		if !ok {
			return nil, &imageError{image: c.Image}
		}
		images[i] = img
	}
	key := pod.Namespace + "/" + pod.Name
	base := fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)
	st := &podState{
		key:     key,
		uid:     pod.UID,
		dir:     filepath.Join(a.cfg.WorkDir, "pods", base),
		logDir:  filepath.Join(a.cfg.WorkDir, "logs", base),
		started: metav1.NewTime(time.Now().Truncate(time.Second)),
	}
	st.root = filepath.Join(st.dir, "root")
	if st.ip, err = a.ips.get(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if st.netns != "" {
				_ = deleteNetns(st.netns)
			}
			a.ips.put(st.ip)
			_ = os.RemoveAll(st.dir)
		}
	}()
	if err := a.prepareRoot(ctx, pod, st, images); err != nil {
		return nil, err
	}
	if st.netns, err = a.cfg.Network.setupPod(st.ip); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	for i := range pod.Spec.Containers {
		c, err := a.newContainer(ctx, pod, st, &pod.Spec.Containers[i], images[i])
		if err != nil {
			cancel()
			return nil, err
		}
		st.containers = append(st.containers, c)
	}
	a.mu.Lock()
	a.pods[key] = st
	a.mu.Unlock()
	for _, c := range st.containers {
		st.wg.Go(func() { a.supervise(runCtx, pod, st, c) })
		st.wg.Go(func() { a.probe(runCtx, st, c) })
	}
	a.log.Info("pod started", "pod", key, "ip", st.ip.String())
	return st, nil
}

// imageError is an image without a stand-in (reported as ErrImagePull).
type imageError struct{ image string }

func (e *imageError) Error() string {
	return fmt.Sprintf("image %s has no stand-in binary on this node (nodeagent.Config.Images)", e.image)
}

// checkSupported refuses Pod features the agent does not emulate.
func checkSupported(pod *corev1.Pod) error {
	switch {
	case len(pod.Spec.InitContainers) > 0:
		return fmt.Errorf("init containers: %w", errUnsupported)
	case pod.Spec.HostNetwork:
		return fmt.Errorf("hostNetwork: %w", errUnsupported)
	case len(pod.Spec.EphemeralContainers) > 0:
		return fmt.Errorf("ephemeral containers: %w", errUnsupported)
	}
	return nil
}

// prepareRoot builds the Pod root: binaries, /etc, /dev, /tmp and volumes.
func (a *Agent) prepareRoot(ctx context.Context, pod *corev1.Pod, st *podState, images []Image) error {
	for _, d := range []string{st.root, st.logDir, filepath.Join(st.root, "tmp"), filepath.Join(st.root, "etc"), filepath.Join(st.root, "dev")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(st.root, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := makeDevices(filepath.Join(st.root, "dev")); err != nil {
		return err
	}
	hostIP := a.HostIP().String()
	etc := map[string]string{
		"hosts":       fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost\n%s\t%s\n", st.ip, pod.Name),
		"hostname":    pod.Name + "\n",
		"resolv.conf": "# no cluster DNS on the test node (see docs/conformance/README.md)\noptions ndots:1 timeout:1 attempts:1\n",
		"passwd":      "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
		"group":       "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range etc {
		if err := os.WriteFile(filepath.Join(st.root, "etc", name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, img := range images {
		dst, err := inside(st.root, img.Path)
		if err != nil {
			return err
		}
		if err := placeBinary(img.Binary, dst); err != nil {
			return err
		}
	}
	src := objectSource{cs: a.cs, ns: pod.Namespace}
	vols := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		files, err := volumeFiles(ctx, src, pod, v, st.ip.String(), hostIP)
		if err != nil {
			return err
		}
		dir := filepath.Join(st.dir, "volumes", v.Name)
		if err := writeVolume(dir, files); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		vols[v.Name] = dir
	}
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			dir, ok := vols[m.Name]
			if !ok {
				return fmt.Errorf("container %s mounts unknown volume %s", c.Name, m.Name)
			}
			if err := mountInto(st.root, dir, m); err != nil {
				return fmt.Errorf("mount %s at %s: %w", m.Name, m.MountPath, err)
			}
		}
	}
	return nil
}

// placeBinary hard-links src to dst, or copies it across file systems.
func placeBinary(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("stand-in binary: %w", err)
	}
	return os.WriteFile(dst, b, 0o755)
}

// teardown stops Pod key's processes (SIGTERM, SIGKILL after grace),
// removes its namespace and root and frees its IP. A Pod the agent does
// not run is ignored.
func (a *Agent) teardown(key string, grace time.Duration) {
	a.mu.Lock()
	st := a.pods[key]
	delete(a.pods, key)
	a.mu.Unlock()
	if st == nil {
		return
	}
	for _, c := range st.containers {
		c.stopGrace.Store(int64(grace))
	}
	st.cancel()
	st.wg.Wait()
	if err := deleteNetns(st.netns); err != nil {
		a.log.Error(err, "pod namespace", "pod", key)
	}
	a.ips.put(st.ip)
	if err := os.RemoveAll(st.dir); err != nil {
		a.log.Error(err, "pod root", "pod", key)
	}
	a.log.Info("pod stopped", "pod", key)
}

// stopAll tears every Pod down (the agent is stopping).
func (a *Agent) stopAll() {
	a.mu.Lock()
	keys := make([]string, 0, len(a.pods))
	for k := range a.pods {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() { a.teardown(k, 0) })
	}
	wg.Wait()
}

// writeStatus updates the Pod's status when want differs from it.
func (a *Agent) writeStatus(ctx context.Context, pod *corev1.Pod, want corev1.PodStatus) error {
	want.QOSClass = pod.Status.QOSClass
	keepTransitionTimes(&want, &pod.Status)
	if statusEqual(&want, &pod.Status) {
		return nil
	}
	p := pod.DeepCopy()
	p.Status = want
	_, err := a.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // a newer version (or its deletion) is queued already
	}
	return err
}
