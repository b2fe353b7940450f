package nodeagent

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0280A8C6:0BB8 0180A8C6:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
`

func TestParseProcNet(t *testing.T) {
	if got := parseProcNet(procNetTCP, "0A"); !slices.Equal(got, []int{3000, 3001}) {
		t.Fatalf("listening ports = %v, want [3000 3001] (the established socket is not one)", got)
	}
	if got := parseProcNet("header\n garbage\n 0: nocolon 0 0A\n 1: 0:ZZZZ 0 0A\n", "0A"); len(got) != 0 {
		t.Fatalf("garbage parsed as %v", got)
	}
}

func FuzzParseProcNet(f *testing.F) {
	f.Add(procNetTCP, "0A")
	f.Add("h\n 0: 00000000:0035 00000000:0000 07 0\n", "07")
	f.Fuzz(func(t *testing.T, text, state string) {
		for _, p := range parseProcNet(text, state) {
			if p <= 0 || p > 65535 {
				t.Fatalf("port %d out of range", p)
			}
		}
	})
}

func TestLogsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := newLogWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	_, _ = w.Write([]byte("one\ntw"))
	_, _ = w.Write([]byte("o\n" + strings.Repeat("x", maxLogLine+10) + "\nlast"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	read := func(q logQuery) string {
		var b bytes.Buffer
		if err := writeLogs(&b, path, q); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	long := strings.Repeat("x", maxLogLine+10)
	if got, want := read(logQuery{tailLines: -1}), "one\ntwo\n"+long+"\nlast\n"; got != want {
		t.Fatalf("all logs = %q…, want %q…", got[:min(len(got), 40)], want[:40])
	}
	// Records are stamped 03:04:06 (one), :07 (two), :08 and :09 (the long
	// line's two parts, joined, timed by the first), :10 (last).
	since := time.Date(2026, 1, 2, 3, 4, 7, 0, time.UTC)
	if got := read(logQuery{tailLines: -1, since: since}); !strings.HasPrefix(got, "two\n") || strings.Contains(got, "one") {
		t.Fatalf("since %v: %q", since, got[:min(len(got), 40)])
	}
	if got := read(logQuery{tailLines: 1, timestamps: true}); got != "2026-01-02T03:04:10Z last\n" {
		t.Fatalf("tail 1 with timestamps = %q", got)
	}
	if got := read(logQuery{tailLines: -1, limitBytes: 6}); got != "one\ntw" {
		t.Fatalf("limitBytes 6 = %q", got)
	}
}

func FuzzParseLogRecord(f *testing.F) {
	f.Add("2026-01-02T03:04:05.123456789Z stdout F hello world")
	f.Add("2026-01-02T03:04:05Z stderr P part")
	f.Add("nonsense")
	f.Fuzz(func(t *testing.T, line string) {
		r, err := parseLogRecord(line)
		if err != nil {
			return
		}
		if !strings.HasSuffix(line, r.text) || r.time.IsZero() {
			t.Fatalf("%q parsed as %+v", line, r)
		}
	})
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"plain":        "plain",
		"$(A)-$(B)":    "1-two",
		"$(C)":         "$(C)",
		"$$(A)":        "$(A)",
		"x$":           "x$",
		"$(A":          "$(A",
		"a$b":          "a$b",
		"--conf=$(B)/": "--conf=two/",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImageRepo(t *testing.T) {
	for in, want := range map[string]string{
		"registry.k8s.io/gateway-api/echo-basic:v1.5.1":     "registry.k8s.io/gateway-api/echo-basic",
		"registry.k8s.io/gateway-api/echo-basic@sha256:abc": "registry.k8s.io/gateway-api/echo-basic",
		"localhost:5000/echo:1":                             "localhost:5000/echo",
		"localhost:5000/echo":                               "localhost:5000/echo",
		"aledbf/echoserver":                                 "aledbf/echoserver",
	} {
		if got := imageRepo(in); got != want {
			t.Errorf("imageRepo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPodFieldsAndResources(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n", UID: "u", Labels: map[string]string{"b": "2", "a": "1"}},
		Spec:       corev1.PodSpec{NodeName: "node"},
	}
	for path, want := range map[string]string{
		"metadata.name": "p", "metadata.namespace": "n", "metadata.uid": "u",
		"metadata.labels['a']": "1", "metadata.labels": "a=\"1\"\nb=\"2\"",
		"spec.nodeName": "node", "status.podIP": "198.18.128.2", "status.hostIP": "198.18.128.1",
	} {
		got, err := podField(pod, path, "198.18.128.2", "198.18.128.1")
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := podField(pod, "spec.bogus", "", ""); err == nil {
		t.Error("unknown field path accepted")
	}
	c := &corev1.Container{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}}
	for res, want := range map[string]string{"requests.cpu": "1", "limits.cpu": nodeCPU} {
		got, err := resourceField(c, &corev1.ResourceFieldSelector{Resource: res})
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", res, got, err, want)
		}
	}
}

func TestIPPool(t *testing.T) {
	p := newIPPool(netip.MustParsePrefix("198.18.128.0/30"))
	a, err := p.get()
	if err != nil || a.String() != "198.18.128.2" {
		t.Fatalf("first = %v, %v", a, err)
	}
	if _, err := p.get(); err == nil {
		t.Fatal("a /30 has one Pod address (network, host and broadcast excluded)")
	}
	p.put(a)
	if b, err := p.get(); err != nil || b != a {
		t.Fatalf("after put: %v, %v", b, err)
	}
	n := DefaultNetwork
	ip := netip.MustParseAddr("198.18.255.254")
	if got := n.vethName(ip) + "p"; len(got) > 15 {
		t.Fatalf("interface name %q longer than 15", got)
	}
}
