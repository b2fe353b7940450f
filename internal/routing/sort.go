package routing

import (
	"cmp"
	"slices"
)

// SortRoutes sorts routes into the precedence order VirtualHost.Routes
// documents: Exact routes first; then Prefix and ImplementationSpecific
// routes (which behave alike); within a kind, longer paths first (a prefix
// path's trailing "/" not counted); ties broken by Source, then Path. The
// sort is in place and deterministic.
func SortRoutes(routes []Route) {
	slices.SortStableFunc(routes, compareRoutes)
}

func compareRoutes(a, b Route) int {
	if c := cmp.Compare(kindRank(a.PathType), kindRank(b.PathType)); c != 0 {
		return c
	}
	if c := cmp.Compare(matchLen(b), matchLen(a)); c != 0 {
		return c // longer first
	}
	if c := cmp.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	return cmp.Compare(a.Path, b.Path)
}

func kindRank(t PathType) int {
	if t == PathExact {
		return 0
	}
	return 1
}

// matchLen is the length of the path a route compares against.
func matchLen(r Route) int {
	n := len(r.Path)
	if r.PathType != PathExact && n > 0 && r.Path[n-1] == '/' {
		n--
	}
	return n
}
