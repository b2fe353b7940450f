package main

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
)

// TestClientToolsAgainstNginx checks the h2load and s_time drivers (and
// their output parsing) against one nginx, briefly.
func TestClientToolsAgainstNginx(t *testing.T) {
	if err := harness.RequireTools("nginx", "openssl", "h2load"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bins := harness.Bins{Echo: filepath.Join(dir, "echo-backend")}
	if err := harness.GoBuild("./test/echo", bins.Echo); err != nil {
		t.Fatal(err)
	}
	pki, err := harness.MakePKI(filepath.Join(dir, "pki"), harness.Host)
	if err != nil {
		t.Fatal(err)
	}
	echo, err := harness.StartEcho(t, bins, dir, "127.0.0.10")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := harness.FreeAddr("127.0.0.41")
	if err != nil {
		t.Fatal(err)
	}
	ng, err := harness.StartNginx(t, harness.NginxConfig{Dir: dir, Name: "nginx", Listen: addr, PKI: pki, Upstream: echo.HTTPAddr, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, h1 := range []bool{true, false} {
		r, err := runH2load(ctx, ng.Addr, h1, 2, 2, time.Second, ng.Proc)
		if err != nil {
			t.Fatal(err)
		}
		if r.ReqPerSec <= 0 || r.Succeeded == 0 {
			t.Errorf("h1=%v: %+v", h1, r)
		}
	}
	full, err := runSTime(ctx, ng.Addr, false, "", time.Second, ng.Proc)
	if err != nil {
		t.Fatal(err)
	}
	reuse, err := runSTime(ctx, ng.Addr, true, "", time.Second, ng.Proc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nginx s_time: full %.0f/s (%.1f ticks/1000), reuse %.0f/s %d/%d reused", full.PerSec(), full.TicksPer1000(), reuse.PerSec(), reuse.Reused, reuse.Conns)
	if full.Conns == 0 || reuse.Reused == 0 || reuse.Reused < reuse.Conns*9/10 {
		t.Errorf("full %+v reuse %+v", full, reuse)
	}
}

func TestPlotSweepIsWellFormedSVG(t *testing.T) {
	for _, pts := range [][]sweepPoint{
		nil,
		{{Replicas: 1, Mesh12: harness.Stats{Conns: 10, Resumed: 10}}},
		{{Replicas: 1}, {Replicas: 2, NginxCache13: harness.Stats{Conns: 10, Resumed: 1}}, {Replicas: 3}},
	} {
		svg := plotSweep(pts)
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := d.Token()
			if err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("invalid SVG for %d points: %v", len(pts), err)
				}
				break
			}
		}
	}
}

func TestReportRendersBeforeAfter(t *testing.T) {
	r := &report{BaselineLabel: "abc1234", KeepAlive: []keepAliveRow{{
		Proto: "HTTP/1.1", Clients: 32, Streams: 1,
		Meshgate: h2loadResult{ReqPerSec: 1200, Succeeded: 1000, CPUTicks: 30},
		Nginx:    h2loadResult{ReqPerSec: 1000, Succeeded: 1000, CPUTicks: 20},
		Baseline: h2loadResult{ReqPerSec: 700, Succeeded: 1000, CPUTicks: 50},
	}}}
	md := r.markdown()
	for _, want := range []string{"built from abc1234", "| HTTP/1.1 | 0.70× | 1.20× | 2.50× | 1.50× |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReportRendersErrors(t *testing.T) {
	r := &report{KeepAliveErr: "meshgate not ready", Sweep: []sweepPoint{{Replicas: 1}}, SVGName: "x.svg"}
	md := r.markdown()
	for _, want := range []string{"could not run: `meshgate not ready`", "![resumption rate by replica count](x.svg)", "| 1 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

func TestMatrixScenarios(t *testing.T) {
	full, quick := matrixScenarios(false), matrixScenarios(true)
	// 2 client counts × (TLS 1.2: 2 certs + TLS 1.3: 2 certs × 2 groups), and
	// full TLS 1.3 handshakes with each certificate.
	if len(full) != 14 || len(quick) != 4 {
		t.Fatalf("full %d quick %d scenarios", len(full), len(quick))
	}
	targets := 0
	for _, s := range full {
		if s.target() > 0 {
			targets++
		}
	}
	if targets != 4 {
		t.Errorf("%d scenarios with targets, want 4", targets)
	}
	for _, s := range quick {
		if s.target() == 0 {
			t.Errorf("quick scenario %v has no target", s)
		}
	}
}

func TestFilterOnly(t *testing.T) {
	all := matrixScenarios(false)
	if got := (&bench{}).filter(all); len(got) != len(all) {
		t.Fatalf("no --only kept %d of %d scenarios", len(got), len(all))
	}
	got := (&bench{only: "1 client(s) TLS 1.3 default RSA-2048"}).filter(all)
	if len(got) != 1 || got[0] != (scenario{Clients: 1, Version: tls.VersionTLS13}) {
		t.Errorf("--only the one-client TLS 1.3 target kept %v", got)
	}
	if got := (&bench{only: "16 client(s) TLS 1.2"}).filter(breakdownScenarios()); len(got) != 1 || got[0].Version != tls.VersionTLS12 {
		t.Errorf("--only on the breakdowns kept %v", got)
	}
	if got := (&bench{only: "no such scenario"}).filter(all); len(got) != 0 {
		t.Errorf("an --only matching nothing kept %v", got)
	}
}

func TestMatrixVerdict(t *testing.T) {
	row := func(v uint16, clients int, mgTicks, ngTicks int64) matrixRow {
		return matrixRow{Scenario: scenario{Clients: clients, Version: v}, Sides: []loadResult{
			{Stats: harness.Stats{Conns: 1000, Resumed: 1000}, CPUTicks: mgTicks},
			{Stats: harness.Stats{Conns: 1000, Resumed: 300}, CPUTicks: ngTicks},
		}}
	}
	m := &matrix{Sides: []string{"meshgate", "nginx"}, Rows: []matrixRow{
		row(tls.VersionTLS12, 1, 100, 160), // 1.60 ≥ 1.5
		row(tls.VersionTLS13, 1, 100, 110), // 1.10 < 1.2
	}}
	md := m.markdown(func(string, string) {})
	for _, want := range []string{"**met**: TLS 1.2 at 1 client(s): 1.60", "**not met**: TLS 1.3 at 1 client(s): 1.10", "| **1.60** | ≥ 1.5 |", "100 % / 30 %"} {
		if !strings.Contains(md, want) {
			t.Errorf("matrix markdown lacks %q:\n%s", want, md)
		}
	}
}
