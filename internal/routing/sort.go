package routing

import (
	"cmp"
	"slices"
)

// SortRoutes sorts routes into the precedence order VirtualHost.Routes
// documents, which is also the Gateway API's: Exact routes first; then
// Prefix and ImplementationSpecific routes (which behave alike); then
// regular expressions; within a kind, longer paths first (a prefix path's
// trailing "/" not counted); then routes with a method condition; then
// more header conditions, then more query conditions; then lower Order
// (Gateway API: older route, then name, then rule and match index); ties
// broken by Source, then Path. The sort is in place and deterministic.
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
	if c := cmp.Compare(len(b.Method), len(a.Method)); c != 0 && (a.Method == "" || b.Method == "") {
		return c // with a method first
	}
	if c := cmp.Compare(len(b.Headers), len(a.Headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.Query), len(a.Query)); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Path, b.Path))
}

func kindRank(t PathType) int {
	switch t {
	case PathExact:
		return 0
	case PathRegex:
		return 2
	}
	return 1
}

// matchLen is the length of the path a route compares against.
func matchLen(r Route) int {
	n := len(r.Path)
	if (r.PathType == PathPrefix || r.PathType == PathImplementationSpecific) && n > 0 && r.Path[n-1] == '/' {
		n--
	}
	return n
}
