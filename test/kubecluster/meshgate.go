package kubecluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// MeshgateOptions configures RunMeshgate.
type MeshgateOptions struct {
	// Bin is the meshgate binary.
	Bin string
	// IP is the address meshgate listens on and publishes in status
	// (--publish-status-address): the address the suites' clients dial.
	// A loopback address of its own, e.g. 127.0.0.80.
	IP string
	// HTTPPort and HTTPSPort default to 80 and 443, where the suites'
	// clients send http:// and https:// requests.
	HTTPPort, HTTPSPort int
	// Name is the process (and --node-name) name (default "meshgate").
	Name string
	// ExtraArgs are appended to `meshgate run`'s flags; the rest keep their
	// defaults.
	ExtraArgs []string
}

// Meshgate is a running `meshgate run` process.
type Meshgate struct {
	IP          string
	HTTPAddr    string
	HTTPSAddr   string
	MetricsAddr string
	Proc        *harness.Proc
}

// RunMeshgate starts `meshgate run` against the cluster with the admin
// kubeconfig and waits (up to a minute) until /readyz answers 200. Its
// cleanup is registered with t.
func (c *Cluster) RunMeshgate(t harness.T, opts MeshgateOptions) (*Meshgate, error) {
	t.Helper()
	if opts.HTTPPort == 0 {
		opts.HTTPPort = 80
	}
	if opts.HTTPSPort == 0 {
		opts.HTTPSPort = 443
	}
	if opts.Name == "" {
		opts.Name = "meshgate"
	}
	metrics, err := harness.FreeAddr(opts.IP)
	if err != nil {
		return nil, err
	}
	m := &Meshgate{
		IP:          opts.IP,
		HTTPAddr:    net.JoinHostPort(opts.IP, strconv.Itoa(opts.HTTPPort)),
		HTTPSAddr:   net.JoinHostPort(opts.IP, strconv.Itoa(opts.HTTPSPort)),
		MetricsAddr: metrics,
	}
	args := append([]string{"run",
		"--kubeconfig", c.Kubeconfig,
		"--http-addr", m.HTTPAddr,
		"--https-addr", m.HTTPSAddr,
		"--metrics-addr", m.MetricsAddr,
		"--publish-status-address", opts.IP,
		"--node-name", opts.Name,
		"--shutdown-grace", "2s",
	}, opts.ExtraArgs...)
	if m.Proc, err = harness.Start(t, c.dir, opts.Name, opts.Bin, args...); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for !m.ready() {
		if m.Proc.Exited() {
			return nil, fmt.Errorf("%s exited before ready:\n%s", opts.Name, m.Proc.Tail(3000))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not ready after a minute:\n%s", opts.Name, m.Proc.Tail(3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return m, nil
}

func (m *Meshgate) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.MetricsAddr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
