package ratelimit

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	c := newClock(start())
	l := newLimiter(t, c, 0)
	lm := limit(t, l, 1, time.Second)
	lm.AllowString("a")
	lm.AllowString("a")
	l.Report()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l)
	want := `
# HELP meshgate_ratelimit_requests_total Requests decided by a limit, by limit and result (admitted or rejected).
# TYPE meshgate_ratelimit_requests_total counter
meshgate_ratelimit_requests_total{limit="ns/ing#rps",result="admitted"} 1
meshgate_ratelimit_requests_total{limit="ns/ing#rps",result="rejected"} 1
# HELP meshgate_ratelimit_tracked_keys Keys a limit tracks on this replica (own and peers' counts).
# TYPE meshgate_ratelimit_tracked_keys gauge
meshgate_ratelimit_tracked_keys{limit="ns/ing#rps"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshgate_ratelimit_requests_total", "meshgate_ratelimit_tracked_keys"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(l, "meshgate_ratelimit_counts_total"); n != 3 {
		t.Errorf("%d count series, want 3", n)
	}
}
