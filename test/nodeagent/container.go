package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// containerState is one container of a running Pod. spec, argv, env and
// image are fixed; the rest is guarded by mu.
type containerState struct {
	spec  *corev1.Container
	image Image
	argv  []string
	env   []string
	dir   string

	// stopGrace is how long a stop waits after SIGTERM (nanoseconds).
	stopGrace atomic.Int64

	mu       sync.Mutex
	proc     *process
	restarts int32
	last     *corev1.ContainerStateTerminated // latest termination
	waiting  string                           // reason while not running
	message  string
	ready    bool
}

// logPath is the log of restart n.
func (c *containerState) logPath(logDir string, n int32) string {
	return filepath.Join(logDir, fmt.Sprintf("%s.%d.log", c.spec.Name, n))
}

// newContainer computes argv and the environment of container spec.
func (a *Agent) newContainer(ctx context.Context, pod *corev1.Pod, st *podState, spec *corev1.Container, img Image) (*containerState, error) {
	env, err := containerEnv(ctx, objectSource{cs: a.cs, ns: pod.Namespace}, pod, spec, st.ip.String(), a.HostIP().String())
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", spec.Name, err)
	}
	env = append(append([]string{}, img.Env...), env...)
	vars := envMap(env)
	var argv []string
	switch {
	case len(spec.Command) > 0:
		if spec.Command[0] != img.Path {
			return nil, fmt.Errorf("container %s: command %q: only the image's stand-in %s runs here: %w", spec.Name, spec.Command[0], img.Path, errUnsupported)
		}
		argv = append(argv, spec.Command...)
		argv = append(argv, spec.Args...)
	case len(spec.Args) > 0:
		argv = append([]string{img.Path}, spec.Args...)
	default:
		argv = append([]string{img.Path}, img.Args...)
	}
	for i := range argv {
		argv[i] = expand(argv[i], vars)
	}
	dir := spec.WorkingDir
	if dir == "" {
		dir = "/"
	}
	c := &containerState{spec: spec, image: img, argv: argv, env: env, dir: dir, waiting: "ContainerCreating"}
	c.stopGrace.Store(int64(a.cfg.MaxGrace))
	return c, nil
}

// restartBackoff bounds the delay between restarts of a container that
// keeps exiting (the kubelet's CrashLoopBackOff, shortened for tests).
func restartBackoff(restarts int32) time.Duration {
	d := 500 * time.Millisecond << min(restarts, 4)
	return min(d, 5*time.Second)
}

// supervise runs the container until ctx ends, restarting it as the Pod's
// restartPolicy says. Every change is queued as a sync of the Pod.
func (a *Agent) supervise(ctx context.Context, pod *corev1.Pod, st *podState, c *containerState) {
	policy := pod.Spec.RestartPolicy
	for {
		c.mu.Lock()
		n := c.restarts
		c.mu.Unlock()
		out, err := newLogWriter(c.logPath(st.logDir, n))
		var p *process
		if err == nil {
			p, err = startProcess(st.netns, st.root, c.dir, c.argv, c.env, out)
			if err != nil {
				_ = out.Close()
			}
		}
		c.mu.Lock()
		if err != nil {
			c.waiting, c.message = "RunContainerError", err.Error()
		} else {
			c.proc, c.waiting, c.message = p, "", ""
		}
		c.mu.Unlock()
		a.queue.Add(st.key)
		if err == nil {
			select {
			case <-p.done:
			case <-ctx.Done():
				p.stop(time.Duration(c.stopGrace.Load()))
			}
			_ = out.Close()
			a.recordExit(c, p)
			if ctx.Err() != nil {
				return
			}
			a.queue.Add(st.key)
			if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && p.exit == 0) {
				<-ctx.Done()
				return
			}
		}
		c.mu.Lock()
		wait := restartBackoff(c.restarts)
		c.restarts++
		if err == nil {
			c.waiting, c.message = "CrashLoopBackOff", fmt.Sprintf("back-off %v restarting failed container", wait)
		}
		c.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

func (a *Agent) recordExit(c *containerState, p *process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reason := "Completed"
	if p.exit != 0 {
		reason = "Error"
	}
	c.last = &corev1.ContainerStateTerminated{
		ExitCode:   int32(p.exit),
		Reason:     reason,
		StartedAt:  metav1.NewTime(p.started.Truncate(time.Second)),
		FinishedAt: metav1.NewTime(p.ended.Truncate(time.Second)),
	}
	c.proc, c.ready = nil, false
}

// probe checks the container's readiness every ProbePeriod until ctx
// ends, queueing a sync of the Pod whenever it changes.
func (a *Agent) probe(ctx context.Context, st *podState, c *containerState) {
	t := time.NewTicker(a.cfg.ProbePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		p := c.proc
		c.mu.Unlock()
		ready := p != nil && !p.exited() && a.isReady(ctx, st, c, p)
		c.mu.Lock()
		changed := c.ready != ready && (c.proc == p)
		if changed {
			c.ready = ready
		}
		c.mu.Unlock()
		if changed {
			a.queue.Add(st.key)
		}
	}
}

// isReady: the readinessProbe when there is one (httpGet, tcpSocket; exec
// and grpc are not supported and never succeed), else every declared
// containerPort bound, else any bound socket.
func (a *Agent) isReady(ctx context.Context, st *podState, c *containerState, p *process) bool {
	if rp := c.spec.ReadinessProbe; rp != nil {
		if time.Since(p.started) < time.Duration(rp.InitialDelaySeconds)*time.Second {
			return false
		}
		return runProbe(ctx, st.ip, c.spec, rp)
	}
	bound, err := boundPorts(p.pid())
	if err != nil {
		return false
	}
	if len(c.spec.Ports) == 0 {
		return len(bound) > 0
	}
	for _, port := range c.spec.Ports {
		proto := string(port.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		if !bound[boundPort{proto, int(port.ContainerPort)}] {
			return false
		}
	}
	return true
}

func runProbe(ctx context.Context, ip netip.Addr, spec *corev1.Container, p *corev1.Probe) bool {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		port, ok := resolvePort(spec, p.HTTPGet.Port)
		if !ok {
			return false
		}
		scheme := "http"
		if p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		host := ip.String()
		if p.HTTPGet.Host != "" {
			host = p.HTTPGet.Host
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), p.HTTPGet.Path), nil)
		if err != nil {
			return false
		}
		req.Header.Set("User-Agent", "kube-probe/meshgate-nodeagent")
		for _, h := range p.HTTPGet.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true} //nolint:gosec // probes do not verify, as the kubelet's
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	case p.TCPSocket != nil:
		port, ok := resolvePort(spec, p.TCPSocket.Port)
		if !ok {
			return false
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
		if err != nil {
			return false
		}
		_ = conn.Close()
		return true
	}
	return false
}

// resolvePort turns a probe port (number or containerPort name) into a
// number.
func resolvePort(spec *corev1.Container, p intstr.IntOrString) (int, bool) {
	if p.Type == intstr.Int {
		return p.IntValue(), p.IntValue() > 0
	}
	for _, cp := range spec.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

// makeDevices creates the few device nodes programs expect.
func makeDevices(dev string) error {
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"random", 1, 8}, {"urandom", 1, 9}} {
		p := filepath.Join(dev, d.name)
		_ = os.Remove(p)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	return nil
}
