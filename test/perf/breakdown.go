package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/meshgate/meshgate/test/perf/breakdown"
)

// printBreakdown is the breakdown subcommand: columns of profile files
// separated by "--", each divided by --conns connections.
func printBreakdown(args []string) error {
	fs := flag.NewFlagSet("breakdown", flag.ContinueOnError)
	conns := fs.Int("conns", 0, "connections the profiles of each column cover (0: shares only)")
	names := fs.String("names", "", "comma-separated column names (default: col1, col2, ...)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var groups [][]string
	cur := []string{}
	for _, a := range fs.Args() {
		if a == "--" {
			groups = append(groups, cur)
			cur = []string{}
			continue
		}
		cur = append(cur, a)
	}
	groups = append(groups, cur)
	colNames := strings.Split(*names, ",")
	var cols []breakdown.Column
	for i, g := range groups {
		if len(g) == 0 {
			return fmt.Errorf("column %d has no profiles", i+1)
		}
		c := breakdown.Column{Name: fmt.Sprintf("col%d", i+1), B: &breakdown.Breakdown{}, Conns: max(*conns, 1)}
		if i < len(colNames) && colNames[i] != "" {
			c.Name = colNames[i]
		}
		for _, p := range g {
			if err := c.B.AddFile(p); err != nil {
				return err
			}
		}
		cols = append(cols, c)
	}
	fmt.Print(breakdown.Markdown(cols))
	return nil
}
