// Package conformance runs the upstream Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance, the version go.mod pins) against
// `meshgate run` on the test cluster of test/kubecluster: real
// kube-apiserver, kube-controller-manager and the node agent running the
// suite's echo-basic. See docs/conformance/README.md for how to run it and
// what the report says.
//
// `make test` runs it with the rest of ./test/... (every feature meshgate
// claims, minus the tests in unsupportedTests); `make conformance` runs
// the same and writes the suite's report.
package conformance

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	xv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"

	"github.com/meshgate/meshgate/test/harness"
	"github.com/meshgate/meshgate/test/kubecluster"
)

const (
	// gatewayClass is the class the suite is run for.
	gatewayClass = "meshgate"
	// controllerName is meshgate's Gateway API controller.
	controllerName = "meshgate.io/gateway-controller"
	// gatewayIP is where meshgate listens and what it publishes in Gateway
	// status: the suite's clients dial it on each listener's port.
	gatewayIP = "127.0.0.81"
	// gatewayPool gives each of the suite's Gateways a loopback address of
	// its own (--gateway-address-pool), published in its status and bound
	// by meshgate, so that Gateways route independently
	// (HTTPRouteMultipleGateways, TLSRouteHostnameIntersection). Linux
	// routes all of 127.0.0.0/8 to lo, so the test process reaches every
	// address; the prefix is apart from gatewayIP and the other suites'.
	gatewayPool = "127.0.82.0/24"
	// suiteQPS and suiteBurst are the client-side rate limit of the
	// suite's Kubernetes clients.
	suiteQPS, suiteBurst = 100, 200
)

// Environment:
//
//	MESHGATE_CONFORMANCE_REPORT    write the suite's report (YAML) there
//	MESHGATE_CONFORMANCE_FEATURES  comma-separated features to claim instead
//	                               of the GatewayClass status's (development)
//	MESHGATE_CONFORMANCE_SKIP      comma-separated test short names to skip
//	                               besides unsupportedTests (listed in the
//	                               report as skipped)
//	MESHGATE_CONFORMANCE_RUN       one test short name to run alone
//	MESHGATE_RUN_ARGS              extra `meshgate run` flags, space-separated
func TestGatewayAPIConformance(t *testing.T) {
	dir := t.TempDir()
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	bins, err := harness.BuildBins(filepath.Join(dir, "bin"))
	require.NoError(t, err)
	crds, err := gatewayCRDs()
	require.NoError(t, err)
	c, err := kubecluster.Start(t, kubecluster.Options{
		Dir:     dir,
		CRDDirs: []string{filepath.Join(root, "config", "crd", "bases"), crds},
	})
	require.NoError(t, err)

	// The suite polls many objects at once (each test waits on Gateways,
	// routes and Pods, some in parallel subtests). The API server is ours
	// alone, so the suite's clients get an explicit client-side limit far
	// above what it sends: throttling is never why one of its waits ends.
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = suiteQPS, suiteBurst
	cl, err := client.New(cfg, client.Options{})
	require.NoError(t, err)
	clientset, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	for _, install := range []func(*runtime.Scheme) error{v1alpha3.Install, v1alpha2.Install, xv1alpha1.Install, gatewayv1.Install, apiextensionsv1.AddToScheme} {
		require.NoError(t, install(cl.Scheme()))
	}
	gwc := &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: gatewayClass},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: controllerName},
	}
	require.NoError(t, cl.Create(context.Background(), gwc))

	_, err = c.RunMeshgate(t, kubecluster.MeshgateOptions{
		Bin: bins.Meshgate, IP: gatewayIP, Name: "meshgate-gateway",
		ExtraArgs: append([]string{"--gateway-address-pool=" + gatewayPool}, strings.Fields(os.Getenv("MESHGATE_RUN_ARGS"))...),
	})
	require.NoError(t, err)

	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     gatewayClass,
			CleanupBaseResources: true,
			CleanupTestResources: true,
			Mode:                 "default",
			TimeoutConfig:        config.DefaultTimeoutConfig(),
			ConformanceProfiles: []suite.ConformanceProfileName{
				suite.GatewayHTTPConformanceProfileName,
				suite.GatewayTLSConformanceProfileName,
				suite.GatewayGRPCConformanceProfileName,
				suite.GatewayTCPConformanceProfileName,
				suite.GatewayUDPConformanceProfileName,
			},
			SupportedFeatures: featureList(os.Getenv("MESHGATE_CONFORMANCE_FEATURES")),
			SkipTests:         skipTests(t),
			RunTest:           os.Getenv("MESHGATE_CONFORMANCE_RUN"),
			ReportOutputPath:  os.Getenv("MESHGATE_CONFORMANCE_REPORT"),
			Implementation: confv1.Implementation{
				Organization: "meshgate",
				Project:      "meshgate",
				URL:          "https://github.com/meshgate/meshgate",
				Version:      implementationVersion(),
				Contact:      []string{"@meshgate/maintainers"},
			},
		},
		Client:     cl,
		Clientset:  clientset,
		RestConfig: cfg,
		ManifestFS: []fs.FS{&conformance.Manifests},
	}
	start := time.Now()
	conformance.RunConformanceWithOptions(t, opts)
	t.Logf("the suite took %s", time.Since(start).Round(time.Second))
}

// gatewayCRDs is the experimental channel of the pinned Gateway API module
// (a superset of the standard one: TLSRoute, TCPRoute, UDPRoute, ...).
func gatewayCRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("locate sigs.k8s.io/gateway-api: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "experimental")
	if _, err := os.Stat(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// unsupportedTests are the suite's tests of claimed features that meshgate
// fails by design, with the reason; they are skipped (the report lists them
// as skipped) and docs/conformance/README.md lists them too.
var unsupportedTests = map[string]string{}

// knownFailures are core tests meshgate still fails, with what is known.
// Runs that write a report (make conformance) run them, so the report
// lists them as failed; other runs (make test) skip them, each logged, so
// that make test stays green while docs/conformance/README.md tracks them.
var knownFailures = map[string]string{}

// skipTests is unsupportedTests plus MESHGATE_CONFORMANCE_SKIP (and, when
// no report is written, knownFailures), each logged.
func skipTests(t *testing.T) []string {
	out := splitList(os.Getenv("MESHGATE_CONFORMANCE_SKIP"))
	for _, name := range out {
		t.Logf("skipping %s: MESHGATE_CONFORMANCE_SKIP", name)
	}
	if os.Getenv("MESHGATE_CONFORMANCE_REPORT") == "" {
		known := make([]string, 0, len(knownFailures))
		for name := range knownFailures {
			known = append(known, name)
		}
		sort.Strings(known)
		for _, name := range known {
			t.Logf("skipping %s (known failure, runs when a report is written): %s", name, knownFailures[name])
		}
		out = append(out, known...)
	}
	names := make([]string, 0, len(unsupportedTests))
	for name := range unsupportedTests {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Logf("skipping %s: %s", name, unsupportedTests[name])
	}
	return append(out, names...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func featureList(s string) []features.FeatureName {
	var out []features.FeatureName
	for _, f := range splitList(s) {
		out = append(out, features.FeatureName(f))
	}
	return out
}

// implementationVersion is the commit under test (the report needs one).
func implementationVersion() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "dev-" + time.Now().UTC().Format("20060102")
	}
	return strings.TrimSpace(string(out))
}
