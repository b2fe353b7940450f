package harness

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// SumMetric sums every sample of the metric name in a Prometheus text
// exposition (body) whose label set contains labelSub ("" matches every
// sample, labelled or not). A name that is a prefix of another metric's
// name does not match that metric.
func SumMetric(body, name, labelSub string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[:end+1], rest[end+1:]
		}
		if !strings.HasPrefix(rest, " ") || !strings.Contains(labels, labelSub) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
			sum += v
		}
	}
	return sum
}

// Metric scrapes the replica's /metrics and sums name's samples whose
// labels contain labelSub (SumMetric).
func (r *Replica) Metric(name, labelSub string) (float64, error) {
	body, err := r.Get("/metrics")
	if err != nil {
		return 0, fmt.Errorf("%s: scrape metrics: %w", r.Name, err)
	}
	return SumMetric(body, name, labelSub), nil
}

// MustMetric is Metric for a test: a failed scrape fails t.
func (r *Replica) MustMetric(t testing.TB, name, labelSub string) float64 {
	t.Helper()
	v, err := r.Metric(name, labelSub)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// RSSKiB returns the resident set size (VmRSS) of process pid in KiB.
func RSSKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss: %q: %w", l, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("rss: no VmRSS in /proc/%d/status", pid)
}
