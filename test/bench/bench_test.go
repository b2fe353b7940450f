package main

import (
	"context"
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
