package chart

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

const kvValuesFile = "test/chart/testdata/kv-values.yaml"

// kvZoneArgs are the --kv-zone arguments of a render, in order.
func kvZoneArgs(t *testing.T, r *rendered) []string {
	t.Helper()
	var out []string
	for _, a := range one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--kv-zone") {
			out = append(out, a)
		}
	}
	return out
}

// checkKVZones: each kv.zones entry becomes one --kv-zone=name[:ttl[:maxBytes]]
// in the listed order, empty parts left out or empty, a numeric maxBytes
// printed as an integer (not 1e+06).
func checkKVZones(t *testing.T, r *rendered) {
	want := []string{"--kv-zone=sessions:10m:64Mi", "--kv-zone=flags", "--kv-zone=deny::1000000", "--kv-zone=carts:1h30m"}
	if got := kvZoneArgs(t, r); !slices.Equal(got, want) {
		t.Fatalf("--kv-zone args %q, want %q", got, want)
	}
}

// TestKVZonesDefault: without kv.zones the chart passes no --kv-zone (the
// deny zone exists without one).
func TestKVZonesDefault(t *testing.T) {
	if got := kvZoneArgs(t, mustRender(t, install{Release: "meshgate", Namespace: "meshgate-system"})); len(got) != 0 {
		t.Fatalf("default render passes %q", got)
	}
}

// TestKVZonesSet: --set writes numbers as int64, which must print the
// same as a values file's.
func TestKVZonesSet(t *testing.T) {
	r := mustRender(t, install{Release: "meshgate", Namespace: "meshgate-system", Set: []string{
		"kv.zones[0].name=deny", "kv.zones[0].maxBytes=1000000", "kv.zones[1].name=s", "kv.zones[1].ttl=5m",
	}})
	if got, want := kvZoneArgs(t, r), []string{"--kv-zone=deny::1000000", "--kv-zone=s:5m"}; !slices.Equal(got, want) {
		t.Fatalf("--kv-zone args %q, want %q", got, want)
	}
}

// TestKVZoneArgsParse: the values `meshgate run` gets from kv.zones are
// ones its --kv-zone parser accepts (TestArgsMatchMeshgateRun checks only
// the flag names). The parser runs before -h is handled, so a refused
// value shows in the output; the control case proves the check can fail.
func TestKVZoneArgsParse(t *testing.T) {
	bin := meshgateBinary(t)
	run := func(args []string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, bin, append(append([]string{"run"}, args...), "-h")...).CombinedOutput()
		return string(out)
	}
	if out := run([]string{"--kv-zone=s:soon"}); !strings.Contains(out, "invalid value") {
		t.Fatalf("control: `meshgate run --kv-zone=s:soon -h` did not report an invalid value:\n%s", out)
	}
	args := kvZoneArgs(t, mustRender(t, install{Release: "meshgate", Namespace: "meshgate-system", ValueFiles: []string{kvValuesFile}}))
	if len(args) == 0 {
		t.Fatal("no --kv-zone rendered")
	}
	if out := run(args); strings.Contains(out, "invalid value") {
		t.Fatalf("`meshgate run %s -h` refuses a rendered value:\n%s", strings.Join(args, " "), out)
	}
}
