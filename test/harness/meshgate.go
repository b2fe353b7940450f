package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ClusterConfig describes N meshgate replicas in standalone mode sharing
// sessions over the mesh. Replica i (1-based) listens on 127.0.0.(20+i),
// all its ports chosen free at start.
type ClusterConfig struct {
	Bins          Bins
	Dir           string // work dir: logs, mesh PKI
	ManifestDir   string // --manifests
	Replicas      int
	ProxyProtocol bool   // --proxy-protocol --trusted-proxies 127.0.0.0/8 (HAProxy in front, on loopback)
	HTTP3         bool   // --http3
	L4ConfigMap   string // --l4-configmap ns/name ("" = none)
	L4BindIP      bool   // pass --l4-bind-ip <replica IP> (one host, many replicas)
	NoMesh        bool   // --mesh-addr "" (each replica keeps a local store only)
	ExtraArgs     []string
	// Pprof serves net/http/pprof on each replica (--pprof-addr on a free
	// port of its IP, Replica.PprofAddr).
	Pprof bool
	// Env is added to the inherited environment of every replica (e.g.
	// GOMAXPROCS=1, GOGC=100 for runtime measurements).
	Env []string
}

// AdminToken is the bearer token of every harness replica's admin write
// endpoints (--admin-token-file; /api/kv, POST /sessionmesh/revoke).
const AdminToken = "harness-admin-token"

// Replica is one meshgate process and its addresses.
type Replica struct {
	Name        string
	IP          string
	HTTPSAddr   string
	HTTPAddr    string
	MetricsAddr string
	MeshAddr    string
	PprofAddr   string // "" unless ClusterConfig.Pprof
	Proc        *Proc
	args        []string
	cfg         *ClusterConfig
}

// Cluster is a set of replicas that know each other as static peers.
type Cluster struct {
	Replicas []*Replica
	MeshDir  string
}

// StartCluster creates the mesh CA with `meshgate mesh-ca`, starts every
// replica and waits (up to readyTimeout) until each /readyz answers 200.
func StartCluster(t T, cfg ClusterConfig, readyTimeout time.Duration) (*Cluster, error) {
	t.Helper()
	c := &Cluster{MeshDir: filepath.Join(cfg.Dir, "mesh-ca")}
	if !cfg.NoMesh {
		out, err := exec.Command(cfg.Bins.Meshgate, "mesh-ca", "--out", c.MeshDir).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("meshgate mesh-ca: %w\n%s", err, out)
		}
	}
	if err := mkdir(cfg.Dir); err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(cfg.Dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(AdminToken+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	var peers []string
	for i := 1; i <= cfg.Replicas; i++ {
		ip := fmt.Sprintf("127.0.0.%d", 20+i)
		r := &Replica{Name: fmt.Sprintf("replica-%d", i), IP: ip, cfg: &cfg}
		addrs, err := FreeAddrs(ip, 5) // https, http, metrics, mesh, pprof
		if err != nil {
			return nil, err
		}
		r.HTTPSAddr, r.HTTPAddr, r.MetricsAddr, r.MeshAddr = addrs[0], addrs[1], addrs[2], addrs[3]
		if cfg.Pprof {
			r.PprofAddr = addrs[4]
		}
		if cfg.NoMesh {
			r.MeshAddr = ""
		} else {
			peers = append(peers, r.MeshAddr)
		}
		c.Replicas = append(c.Replicas, r)
	}
	for _, r := range c.Replicas {
		r.args = []string{"standalone",
			"--manifests", cfg.ManifestDir,
			"--https-addr", r.HTTPSAddr,
			"--http-addr", r.HTTPAddr,
			"--metrics-addr", r.MetricsAddr,
			"--node-name", r.Name,
			"--mesh-addr", r.MeshAddr,
			"--shutdown-grace", "2s",
			"--admin-token-file", tokenFile,
		}
		if !cfg.NoMesh {
			r.args = append(r.args, "--peers", strings.Join(peers, ","), "--mesh-dir", c.MeshDir)
		}
		if cfg.ProxyProtocol {
			r.args = append(r.args, "--proxy-protocol", "--trusted-proxies", "127.0.0.0/8")
		}
		if r.PprofAddr != "" {
			r.args = append(r.args, "--pprof-addr", r.PprofAddr)
		}
		if cfg.HTTP3 {
			r.args = append(r.args, "--http3")
		}
		if cfg.L4ConfigMap != "" {
			r.args = append(r.args, "--l4-configmap", cfg.L4ConfigMap)
			if cfg.L4BindIP {
				r.args = append(r.args, "--l4-bind-ip", r.IP)
			}
		}
		r.args = append(r.args, cfg.ExtraArgs...)
		if err := r.Start(t); err != nil {
			return nil, err
		}
	}
	for _, r := range c.Replicas {
		if err := r.WaitReady(readyTimeout); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// HTTPSAddrs returns every replica's TLS address, in replica order.
func (c *Cluster) HTTPSAddrs() []string {
	var out []string
	for _, r := range c.Replicas {
		out = append(out, r.HTTPSAddr)
	}
	return out
}

// Start (re)starts the replica's process with the same flags.
func (r *Replica) Start(t T) error {
	t.Helper()
	p, err := StartEnv(t, r.cfg.Env, r.cfg.Dir, r.Name, r.cfg.Bins.Meshgate, r.args...)
	if err != nil {
		return err
	}
	r.Proc = p
	return nil
}

// Ready reports whether GET /readyz on the metrics address answers 200.
func (r *Replica) Ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.MetricsAddr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady polls /readyz until 200, the process exits, or timeout.
func (r *Replica) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !r.Ready() {
		if r.Proc.Exited() {
			return fmt.Errorf("%s exited before ready; log tail:\n%s", r.Name, r.Proc.Tail(3000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v; log tail:\n%s", r.Name, timeout, r.Proc.Tail(3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// Admin sends method path (with body) to the replica's admin listener
// with the AdminToken and returns the status code and body.
func (r *Replica) Admin(method, path, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+r.MetricsAddr+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// Get fetches http://metrics-addr/path (e.g. "/status/sessionmesh").
func (r *Replica) Get(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.MetricsAddr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for b.Len() < 4<<20 {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String(), nil
}

// CPUProfile saves a CPU profile of secs seconds from the pprof listener at
// addr into path.
func CPUProfile(ctx context.Context, addr string, secs int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("pprof: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", addr, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Port returns the port of a host:port address.
func Port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// mkdir creates dir and its parents.
func mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	return nil
}
