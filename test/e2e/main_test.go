// Package e2e drives real meshgate processes end to end: several replicas in
// standalone mode behind HAProxy (TCP mode, round robin, PROXY v2), real
// clients (curl, openssl s_client, a Go TLS client, a WebSocket client, a UDP
// client) and nginx from Debian as the comparison. `go test ./test/e2e/`
// runs it (part of `make test`); missing Debian tools are installed with
// apt-get, never skipped. Every process is killed at the end; the work dir
// (logs, configs) is kept and printed when a test fails.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/meshgate/meshgate/test/harness"
)

// env is the shared scenario: echo backend, three meshgate replicas behind
// HAProxy and three nginx servers behind another HAProxy. Tests must not
// stop or restart its processes (TestKillReplica makes its own cluster).
var env *harness.Env

// udpPort and tcpPort are meshgate's L4 UDP and TCP ports in env (bound on
// each replica's IP).
var udpPort, tcpPort int

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	r := &harness.Runner{Out: os.Stderr}
	code := 1
	defer func() {
		r.Close()
		if code == 0 {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: logs and configs kept in %s\n", dir)
		}
	}()
	bins, err := harness.BuildBins(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		return 1
	}
	if udpPort, err = harness.FreePort("127.0.0.21"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if tcpPort, err = harness.FreePort("127.0.0.21"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	env, err = harness.SetupEnv(r, dir, bins, harness.EnvOptions{Replicas: 3, Nginx: 3, HTTP3: true, UDPPort: udpPort, TCPPort: tcpPort})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setup:", err)
		return 1
	}
	code = m.Run()
	return code
}
