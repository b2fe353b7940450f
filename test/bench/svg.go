package main

import (
	"fmt"
	"strings"

	"github.com/meshgate/meshgate/test/harness"
)

// plotSweep draws the resumption rate (0..100 %) against the replica count
// as a self-contained SVG line chart, one line per server and TLS version.
func plotSweep(pts []sweepPoint) string {
	const (
		w, h         = 640, 360
		left, right  = 60, 200
		top, bottom  = 30, 50
		plotW, plotH = w - left - right, h - top - bottom
	)
	series := []struct {
		name, color, dash string
		width             int // TLS 1.2 lines are wide and pale so a TLS 1.3 line on top stays visible
		get               func(sweepPoint) harness.Stats
	}{
		{"meshgate TLS 1.2", "#9ecae1", "", 7, func(p sweepPoint) harness.Stats { return p.Mesh12 }},
		{"meshgate TLS 1.3", "#08519c", "", 2, func(p sweepPoint) harness.Stats { return p.Mesh13 }},
		{"nginx TLS 1.2", "#fcae91", "", 7, func(p sweepPoint) harness.Stats { return p.NginxTickets12 }},
		{"nginx TLS 1.3", "#a50f15", "6,4", 2, func(p sweepPoint) harness.Stats { return p.NginxCache13 }},
	}
	maxN := 1
	for _, p := range pts {
		maxN = max(maxN, p.Replicas)
	}
	x := func(n int) float64 {
		if maxN == 1 {
			return left + plotW/2
		}
		return left + float64(n-1)*plotW/float64(maxN-1)
	}
	y := func(pct float64) float64 { return top + plotH - pct*plotH/100 }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">Sessions resumed on round-robin reconnect</text>`+"\n", left)
	for pct := 0; pct <= 100; pct += 25 {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%d%%</text>`+"\n",
			left, y(float64(pct)), left+plotW, y(float64(pct)), left-6, y(float64(pct))+4, pct)
	}
	for n := 1; n <= maxN; n++ {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(n), top+plotH+18, n)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">replicas behind HAProxy</text>`+"\n", left+plotW/2, h-10)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n",
		left, top, left, top+plotH, left, top+plotH, left+plotW, top+plotH)
	for i, s := range series {
		var path []string
		for _, p := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", x(p.Replicas), y(s.get(p).Rate())))
		}
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		if len(path) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%d"%s points="%s"/>`+"\n", s.color, s.width, dash, strings.Join(path, " "))
			for _, pt := range path {
				xy := strings.Split(pt, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], s.color)
			}
		}
		ly := top + 20 + i*20
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%d"%s/><text x="%d" y="%d">%s</text>`+"\n",
			left+plotW+15, ly, left+plotW+45, ly, s.color, s.width, dash, left+plotW+50, ly+4, s.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
