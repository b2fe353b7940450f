package harness

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Runner is a T for programs (the benchmark driver, TestMain): Logf writes
// to Out, Cleanup functions run in reverse order on Close. Safe for
// concurrent use.
type Runner struct {
	Out      io.Writer
	mu       sync.Mutex
	cleanups []func()
}

// Helper implements T.
func (r *Runner) Helper() {}

// Logf implements T.
func (r *Runner) Logf(format string, args ...any) {
	if r.Out != nil {
		fmt.Fprintf(r.Out, format+"\n", args...)
	}
}

// Cleanup implements T.
func (r *Runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// Close runs the registered cleanups, last first. Calling it again runs
// only cleanups registered since.
func (r *Runner) Close() {
	r.mu.Lock()
	cs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// Echo is a running echo backend.
type Echo struct {
	HTTPAddr string
	UDPAddr  string
	TCPAddr  string
	Proc     *Proc
}

// StartEcho runs bin/echo-backend on ip with free HTTP and UDP ports.
func StartEcho(t T, bins Bins, dir, ip string) (*Echo, error) {
	t.Helper()
	e := &Echo{}
	var err error
	if e.HTTPAddr, err = FreeAddr(ip); err != nil {
		return nil, err
	}
	if e.UDPAddr, err = FreeAddr(ip); err != nil {
		return nil, err
	}
	if e.TCPAddr, err = FreeAddr(ip); err != nil {
		return nil, err
	}
	e.Proc, err = Start(t, dir, "echo-backend", bins.Echo, "--listen", e.HTTPAddr, "--udp", e.UDPAddr,
		"--tcp", e.TCPAddr, "--name", "echo-e2e")
	if err != nil {
		return nil, err
	}
	if err := WaitTCP(e.HTTPAddr, 5*time.Second); err != nil {
		return nil, fmt.Errorf("echo backend: %w\n%s", err, e.Proc.Tail(2000))
	}
	return e, nil
}

// EnvOptions selects what SetupEnv starts.
type EnvOptions struct {
	Replicas int  // meshgate replicas (0 = none)
	Nginx    int  // nginx servers (0 = none)
	HTTP3    bool // meshgate --http3
	UDPPort  int  // meshgate L4 UDP port to the UDP echo (0 = none)
	TCPPort  int  // meshgate L4 TCP port to the TCP echo (0 = none; needs UDPPort)
	NoMesh   bool // meshgate without the session mesh
	// NginxTickets: see NginxConfig.Tickets.
	NginxTickets bool
	// Direct starts the replicas without HAProxy in front and without
	// PROXY protocol: clients dial Cluster's replicas themselves.
	Direct bool
	// ExtraArgs are more meshgate flags; ExtraYAML more manifests (YAML
	// documents, TLSPolicies for instance) next to the demo Ingress.
	ExtraArgs []string
	ExtraYAML string
	// Pprof: see ClusterConfig.Pprof.
	Pprof bool
}

// tools lists the commands SetupEnv needs for opts.
func (opts EnvOptions) tools() []string {
	tools := []string{"openssl", "curl"}
	if (opts.Replicas > 0 && !opts.Direct) || opts.Nginx > 0 {
		tools = append(tools, "haproxy")
	}
	if opts.Nginx > 0 {
		tools = append(tools, "nginx")
	}
	return tools
}

// Env is a complete scenario: echo backend, meshgate replicas behind
// HAProxy (PROXY v2) and, optionally, nginx servers behind their own
// HAProxy (PROXY v2 too, so both sides do the same work).
type Env struct {
	Dir      string
	Bins     Bins
	PKI      *PKI
	Echo     *Echo
	Cluster  *Cluster // nil without replicas
	MeshLB   *HAProxy // in front of Cluster
	Nginx    []*Nginx
	NginxLB  *HAProxy // in front of Nginx
	Manifest string   // manifest dir
}

// NewEnv is SetupEnv for one test: the binaries (BuildBins) and everything
// else under t.TempDir(), t failed on any error.
func NewEnv(t testing.TB, opts EnvOptions) *Env {
	t.Helper()
	dir := t.TempDir()
	bins, err := BuildBins(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := SetupEnv(t, dir, bins, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// SetupEnv starts everything opts asks for under dir; t's cleanups stop it.
func SetupEnv(t T, dir string, bins Bins, opts EnvOptions) (*Env, error) {
	t.Helper()
	if err := RequireTools(opts.tools()...); err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Bins: bins}
	var err error
	if e.PKI, err = MakePKI(filepath.Join(dir, "pki"), Host, OtherHost); err != nil {
		return nil, err
	}
	if e.Echo, err = StartEcho(t, bins, dir, "127.0.0.10"); err != nil {
		return nil, err
	}
	if opts.Replicas > 0 {
		m := Manifests{EchoAddr: e.Echo.HTTPAddr, SecretYAML: e.PKI.SecretYAML, Extra: opts.ExtraYAML}
		cm := ""
		if opts.UDPPort != 0 {
			m.UDPPort, m.UDPBackend, cm = opts.UDPPort, e.Echo.UDPAddr, "default/meshgate-l4"
			m.TCPPort, m.TCPBackend = opts.TCPPort, e.Echo.TCPAddr
		}
		if e.Manifest, err = m.Write(filepath.Join(dir, "manifests")); err != nil {
			return nil, err
		}
		e.Cluster, err = StartCluster(t, ClusterConfig{
			Bins: bins, Dir: dir, ManifestDir: e.Manifest, Replicas: opts.Replicas,
			ProxyProtocol: !opts.Direct, HTTP3: opts.HTTP3, L4ConfigMap: cm, L4BindIP: cm != "", NoMesh: opts.NoMesh,
			ExtraArgs: opts.ExtraArgs, Pprof: opts.Pprof,
		}, 30*time.Second)
		if err != nil {
			return nil, err
		}
		if !opts.Direct {
			if e.MeshLB, err = StartHAProxy(t, dir, "haproxy-meshgate", "127.0.0.30", e.Cluster.HTTPSAddrs(), true); err != nil {
				return nil, err
			}
		}
	}
	if opts.Nginx > 0 {
		if e.Nginx, err = StartNginxTrio(t, dir, "nginx", opts.Nginx, e.PKI, e.Echo.HTTPAddr, opts.NginxTickets); err != nil {
			return nil, err
		}
		if e.NginxLB, err = StartHAProxy(t, dir, "haproxy-nginx", "127.0.0.50", NginxAddrs(e.Nginx), true); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// ResolveArg returns curl's --resolve value that sends Host to addr.
func ResolveArg(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return Host + ":" + p + ":" + h
}

// URL returns https://Host:port/path for addr's port.
func URL(addr, path string) string {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return fmt.Sprintf("https://%s:%d%s", Host, n, path)
}
