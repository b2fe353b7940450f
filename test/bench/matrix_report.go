package main

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/meshgate/meshgate/test/perf/breakdown"
)

// nginxIndex is the nginx side's index (the last), or -1.
func (m *matrix) nginxIndex() int {
	for i, s := range m.Sides {
		if s == "nginx" {
			return i
		}
	}
	return -1
}

// ratio is nginx's CPU per connection over side i's in row, or 0.
func (m *matrix) ratio(row matrixRow, i int) float64 {
	n := m.nginxIndex()
	if n < 0 {
		return 0
	}
	mine, theirs := row.Sides[i].TicksPer1000(), row.Sides[n].TicksPer1000()
	if mine == 0 || theirs == 0 {
		return 0
	}
	return theirs / mine
}

// markdown renders section 3: the matrix, the verdict on the targets and
// the per-connection breakdowns.
func (m *matrix) markdown(note func(what, err string)) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	if len(m.Rows) == 0 {
		return ""
	}
	n := m.nginxIndex()
	var mgSides []int
	for i := range m.Sides {
		if i != n {
			mgSides = append(mgSides, i)
		}
	}
	join := func(f func(i int) string) string {
		parts := make([]string, len(m.Sides))
		for i := range m.Sides {
			parts[i] = f(i)
		}
		return strings.Join(parts, " / ")
	}
	w("| clients | TLS | key exchange | certificate | resumed (%s) | server CPU ticks per 1000 conns (%s) | conns/s (%s) |",
		strings.Join(m.Sides, " / "), strings.Join(m.Sides, " / "), strings.Join(m.Sides, " / "))
	for _, i := range mgSides {
		w(" **nginx / %s** |", m.Sides[i])
	}
	w(" target |\n|---|---|---|---|---|---|---|")
	for range mgSides {
		w("---|")
	}
	w("---|\n")
	for _, row := range m.Rows {
		sc := row.Scenario
		w("| %d | %s | %s | %s | %s | %s | %s |", sc.Clients, tls.VersionName(sc.Version), sc.groups(), sc.cert(),
			join(func(i int) string { return fmt.Sprintf("%.0f %%", row.Sides[i].Stats.Rate()) }),
			join(func(i int) string { return fmt.Sprintf("%.1f", row.Sides[i].TicksPer1000()) }),
			join(func(i int) string { return fmt.Sprintf("%.0f", row.Sides[i].Stats.PerSecond()) }))
		for k, i := range mgSides {
			r := m.ratio(row, i)
			if k == 0 {
				w(" **%.2f** |", r)
			} else {
				w(" %.2f |", r)
			}
		}
		if t := sc.target(); t > 0 {
			w(" ≥ %.1f |\n", t)
		} else {
			w(" – |\n")
		}
		for i, s := range m.Sides {
			if e := row.Sides[i].Stats.FirstErr; e != nil {
				note(fmt.Sprintf("%v, %s: %d errors, first", sc, s, row.Sides[i].Stats.Errors), e.Error())
			}
		}
	}
	if len(mgSides) > 0 {
		w("\n%s", m.verdict(mgSides[0]))
	}
	for _, br := range m.Breakdowns {
		w("\n%s", br.markdown(note))
	}
	return b.String()
}

// verdict states, for side i, which targets this run met.
func (m *matrix) verdict(i int) string {
	var met, missed []string
	for _, row := range m.Rows {
		t := row.Scenario.target()
		if t == 0 {
			continue
		}
		r := m.ratio(row, i)
		s := fmt.Sprintf("%s at %d client(s): %.2f (target ≥ %.1f)", tls.VersionName(row.Scenario.Version), row.Scenario.Clients, r, t)
		if r >= t {
			met = append(met, s)
		} else {
			missed = append(missed, s)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Targets for %s in this run (nginx CPU / meshgate CPU per round-robin connection, RSA-2048, default groups):\n\n", m.Sides[i])
	if len(met) > 0 {
		fmt.Fprintf(&b, "- **met**: %s\n", strings.Join(met, "; "))
	}
	if len(missed) > 0 {
		fmt.Fprintf(&b, "- **not met**: %s\n", strings.Join(missed, "; "))
	}
	return b.String()
}

// markdown renders one breakdown: buckets in µs per connection for every
// profiled side, and how the profiled total compares with /proc.
func (br breakdownResult) markdown(note func(what, err string)) string {
	var b strings.Builder
	sc := br.Scenario
	clients := fmt.Sprintf("%d concurrent clients", sc.Clients)
	if sc.Clients == 1 {
		clients = "1 client"
	}
	fmt.Fprintf(&b, "#### Where a connection's CPU goes: %s, %s, %s, %s groups\n\n", tls.VersionName(sc.Version), clients, sc.cert(), sc.groups())
	b.WriteString("CPU profiles of the three replicas of each meshgate side under this load (one side at a time), summed and divided by the connections made meanwhile: µs of CPU per connection, share of the side's total in brackets. Each replica issues some sessions and receives the others' over the mesh, so the mesh rows hold the issuer's and both peers' work. Every sample goes to one bucket, the first rule of test/perf/breakdown's Rules that names a function on its stack: GC and the mesh's goroutines first, then scheduler, syscalls and allocation whoever calls them, then crypto by primitive, then the component.\n\n")
	var cols []breakdown.Column
	for _, c := range br.Cols {
		if c.Err != "" {
			note("breakdown "+c.Side, c.Err)
			continue
		}
		cols = append(cols, breakdown.Column{Name: c.Side, B: c.B, Conns: c.Stats.Conns, ProcNanos: c.ProcTicks * 10_000_000})
	}
	if len(cols) == 0 {
		return b.String()
	}
	b.WriteString(breakdown.Markdown(cols))
	b.WriteString("\n")
	for _, c := range br.Cols {
		if c.Err != "" || c.Stats.Conns == 0 {
			continue
		}
		fmt.Fprintf(&b, "- %s: %d connections (%.0f %% resumed) while profiled.\n", c.Side, c.Stats.Conns, c.Stats.Rate())
	}
	return b.String()
}
